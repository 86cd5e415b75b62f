"""Data-state parity: do the primary's and the candidate's databases hold the same rows?

    result = compare_databases("sqlite:///docker-data", "postgresql+psycopg://…",
                               load_data_settings())

Checksum bisection (data-diff style): per key segment, a row count and an order-independent sum of
row hashes are computed inside each database; differing segments are split and compared again;
rows are fetched only for small segments, then compared column by column with the tolerances of
`[data.tables]`. See `settings` (what is compared), `columns` (normalisation), `bisect` (the
driver) and `findings` (what is reported).
"""

from harness.datastate.bisect import compare_databases
from harness.datastate.findings import DataStateResult
from harness.datastate.settings import DataSettings, TableSpec, load_data_settings

__all__ = ["DataSettings", "DataStateResult", "TableSpec", "compare_databases",
           "load_data_settings"]
