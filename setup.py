"""Builds the optional C log-mel kernel; everything else is declared in pyproject.toml.

The extension is optional: if it cannot be compiled the package installs without it and the cpu
front-end backend uses its NumPy/SciPy path.
"""

import sys

from setuptools import Extension, setup

extra = [] if sys.platform == "win32" else ["-O3", "-std=c11", "-fno-math-errno", "-Wno-psabi"]

setup(
    ext_modules=[
        Extension(
            "amanuensis.features._melkernel",
            sources=["src/amanuensis/features/_melkernel.c"],
            depends=["src/amanuensis/features/_melkernel_impl.h"],
            extra_compile_args=extra,
            optional=True,
        )
    ]
)
