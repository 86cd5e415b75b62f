"""The compiled numeric kernel (harness/diff/_kernel.pyx), built when Cython and a C compiler
are at hand; without them the package installs as pure Python (harness.diff.values falls back to
the kernel's Python twin). Everything else is in pyproject.toml."""

from setuptools import Extension, setup

try:
    from Cython.Build import cythonize
except ImportError:  # no Cython (a build without build isolation): pure Python
    extensions = []
else:
    extensions = cythonize(
        [Extension(
            "harness.diff._kernel", ["harness/diff/_kernel.pyx"],
            # see _kernel.pyx: no fused multiply-add, the same rounding as Python and numpy
            extra_compile_args=["-ffp-contract=off"],
        )],
        quiet=True,
    )
    for extension in extensions:  # (set after cythonize, which does not carry it over)
        extension.optional = True  # a failed compile (no C compiler) warns; the install goes on

setup(ext_modules=extensions)
