"""For tests, the project's and a user's: the pytest plugin and the hypothesis strategies.

    pytest_plugin.py  `pytest -m parity`: recordings replayed and gated as tests
    requests.py       strategies of Cryptobot requests (symbols, timeframes, orders...)
    answers.py        strategies of answer bodies and lifted pairs, for comparator properties
"""
