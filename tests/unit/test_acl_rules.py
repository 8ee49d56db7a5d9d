"""Every served API has an entry in the one table of ACL checks."""

from odradek.security.checks import RULES
from odradek.server.registry import load_all


def test_every_served_api_has_an_acl_rule():
    served = {api.name for api in load_all().values()}
    assert served - set(RULES) == set(), "add the API to odradek.security.checks.RULES"
    assert set(RULES) - served == set()
