"""Lets ``pytest benchmarks`` run from a checkout without installing the package.

The installed entry point has the same name as the module, so when densebench is also
installed the plugin is registered once, not twice.
"""

pytest_plugins = ["densebench.plugin"]
