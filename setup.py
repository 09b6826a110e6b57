"""Maps the top-level source folders onto the single import package `axtrain`.

The repository keeps compiler/, runtime/, trainer/ and hwmodels/ at the top level; installed, they are
`axtrain.compiler`, `axtrain.runtime`, ... so that a wheel puts only `axtrain` into site-packages.
Project metadata lives in pyproject.toml.
"""

from setuptools import find_packages, setup

PARTS = ("compiler", "runtime", "trainer", "hwmodels")

package_dir = {"axtrain": "axtrain"}
packages = ["axtrain"] + [f"axtrain.{sub}" for sub in find_packages("axtrain")]
for part in PARTS:
    package_dir[f"axtrain.{part}"] = part
    packages += [f"axtrain.{part}"] + [f"axtrain.{part}.{sub}" for sub in find_packages(part)]

setup(packages=packages, package_dir=package_dir)
