"""The integration layer: one config path and one runtime object, for every framework.

:mod:`.config` turns a mapping of settings into validated options and a database;
:class:`.runtime.PoolRuntime` owns start and close of the pool, snapshot writer and
metrics; :mod:`.connections` returns a request's connection. No framework import here.
"""
