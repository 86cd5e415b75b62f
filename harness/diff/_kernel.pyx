# cython: language_level=3, boundscheck=False, wraparound=False, cdivision=True
"""The numeric kernel of `harness.diff.values`, compiled when a C compiler is at hand at install
time (`setup.py`; `values.py` falls back to its own Python twin, `_finite_column_py`, when it
is not built).

Built with -ffp-contract=off: a fused multiply-add would round ``atol + rtol * scale`` once
instead of twice and judge a point on the edge of its tolerance otherwise than the Python twin
and numpy do.
"""

from cpython.float cimport PyFloat_AS_DOUBLE, PyFloat_CheckExact
from cpython.list cimport PyList_CheckExact
from cpython.long cimport PyLong_AsDouble, PyLong_CheckExact
from cpython.mem cimport PyMem_Free, PyMem_Malloc
from cpython.tuple cimport PyTuple_CheckExact
from libc.math cimport fabs, isfinite


cdef bint _read(object values, double* out, Py_ssize_t size) except -1:
    """Read `values` (exact floats and ints) into `out`; true when one is anything else, an
    integer is past float range, or there are not `size` of them."""
    cdef object items = (values if PyList_CheckExact(values) or PyTuple_CheckExact(values)
                         else list(values))
    cdef object value
    cdef Py_ssize_t k
    if len(items) != size:
        return True
    for k in range(size):
        value = items[k]
        if PyFloat_CheckExact(value):
            out[k] = PyFloat_AS_DOUBLE(value)
        elif PyLong_CheckExact(value):
            try:
                out[k] = PyLong_AsDouble(value)
            except OverflowError:
                return True
        else:  # a null, a bool, anything else: the Python path's
            return True
    return False


def finite_column(primary, candidate, double rtol, double atol):
    """`values._finite_column_py` in C: (count outside tolerance, first of them, largest relative
    and absolute deviation among them) for two equally long columns of finite numbers within
    tolerances not negative; None for anything else."""
    cdef Py_ssize_t size = len(primary), k, count = 0, first = 0
    cdef double a, b, deviation, abs_a, abs_b, scale, rel
    cdef double max_rel = 0.0, max_abs = 0.0, sum_p = 0.0, sum_c = 0.0
    if not (rtol >= 0 and atol >= 0):
        return None
    cdef double* p = <double*>PyMem_Malloc((2 * size + 1) * sizeof(double))
    if p == NULL:
        raise MemoryError()
    cdef double* c = p + size
    try:
        if _read(primary, p, size) or _read(candidate, c, size):
            return None
        # sums of magnitudes in the twin's order (`sum`), so that both refuse the same columns
        for k in range(size):
            sum_p += fabs(p[k])
        for k in range(size):
            sum_c += fabs(c[k])
        if not isfinite(sum_p + sum_c):
            return None
        for k in range(size):
            a = p[k]
            b = c[k]
            if a != b:
                deviation = fabs(a - b)
                abs_a = fabs(a)
                abs_b = fabs(b)
                scale = abs_a if abs_a >= abs_b else abs_b
                if deviation > atol + rtol * scale:
                    if count == 0:
                        first = k
                    count += 1
                    rel = deviation / scale
                    if rel > max_rel:
                        max_rel = rel
                    if deviation > max_abs:
                        max_abs = deviation
        return count, first, max_rel, max_abs
    finally:
        PyMem_Free(p)
