"""Packages and package data; everything else is in pyproject.toml.

The embedded default bundle stays at the top level of the checkout (``assets/``) and travels in the
wheel as package data under ``geodemo/assets`` (``package_dir`` maps it), where
:data:`geodemo.paths.BUNDLE_DIR` finds it in an installed copy.
"""

from setuptools import find_packages, setup

setup(
    packages=[*find_packages(include=["geodemo", "geodemo.*"]), "geodemo.assets"],
    package_dir={"geodemo.assets": "assets"},
    package_data={"geodemo": ["**/*.json", "viz/static/leaflet/*"], "geodemo.assets": ["**/*"]},
    include_package_data=False,
)
