"""session_conf: runtime confs set around a block and restored, also when fits in threads overlap."""


class _Conf:
    """A session's runtime conf, enough for session_conf: get, set, unset."""

    def __init__(self, **values):
        self.conf, self.values = self, dict(values)

    def get(self, key, default=None):
        return self.values.get(key, default)

    def set(self, key, value):
        self.values[key] = value

    def unset(self, key):
        self.values.pop(key, None)


def test_overlapping_session_confs_restore_the_users_value():
    """Two fits in threads toggle adaptive execution around their half-steps, interleaved (A in, B in, A out,
    B out): the user's value comes back, where restoring each block's own 'previous' value left it off."""
    from sparknmf.engine.session import session_conf

    spark = _Conf(**{"spark.sql.adaptive.enabled": "true"})
    first, second = (session_conf(spark, {"spark.sql.adaptive.enabled": "false", "x": "1"}) for _ in range(2))
    first.__enter__()
    second.__enter__()
    first.__exit__(None, None, None)
    assert spark.values == {"spark.sql.adaptive.enabled": "false", "x": "1"}  # the second still runs
    second.__exit__(None, None, None)
    assert spark.values == {"spark.sql.adaptive.enabled": "true"}
