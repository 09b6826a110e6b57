"""Maps the top-level source folders onto the single import package `axtrain`.

The repository keeps compiler/, runtime/, trainer/ and hwmodels/ at the top level; installed, they are
`axtrain.compiler`, `axtrain.runtime`, ... so that a wheel puts only `axtrain` into site-packages.
Project metadata lives in pyproject.toml.
"""

from setuptools import find_namespace_packages, find_packages, setup

PARTS = ("compiler", "runtime", "trainer", "hwmodels")

package_dir = {"axtrain": "axtrain"}
# Namespace discovery under axtrain/ so data folders (datasets/files/...) count as packages and
# their files ship as package data without setuptools' "package would be ignored" warning.
packages = ["axtrain"] + [f"axtrain.{sub}" for sub in find_namespace_packages("axtrain", exclude=["*__pycache__*"])]
for part in PARTS:
    package_dir[f"axtrain.{part}"] = part
    packages += [f"axtrain.{part}"] + [f"axtrain.{part}.{sub}" for sub in find_packages(part)]

setup(packages=packages, package_dir=package_dir)
