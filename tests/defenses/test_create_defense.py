import pytest

from backdoorguard.defenses.base import create_defense, defense_names
from backdoorguard.errors import BadInput


def test_defense_names_lists_one_family_only():
    assert {"d3", "ft", "sms"} <= set(defense_names("purification"))
    assert "nc" not in defense_names("purification") and "nc" in defense_names("detection")


@pytest.mark.parametrize("name, family, message", [
    ("nope", "detection", r"^unknown detection defense 'nope'; allowed: .*\bnc\b"),
    ("nope", "purification", r"^unknown purification defense 'nope'; allowed: .*\bd3\b"),
    ("nope", None, r"^unknown defense 'nope'; known: "),
    ("nc", "purification", r"^'nc' is a detection defense, not purification; purification defenses: "),
])
def test_create_defense_names_what_is_allowed(name, family, message):
    with pytest.raises(BadInput, match=message):
        create_defense(name, family)
