"""Intercom's limits: value truncation, attribute name checks, and the shape of an update."""

from __future__ import annotations

import pytest

from sync_worker.attributes import (
    InvalidAttributeName,
    build_update,
    check_attribute_name,
    resolve_names,
    truncate,
)
from sync_worker.errors import PermanentError
from sync_worker.integrations.clients.profile import ATTRIBUTES
from sync_worker.profiles.base import AttributeSpec

SPECS = (
    AttributeSpec("client_id", "Client ID"),
    AttributeSpec("name", "Name", standard_field="name", custom_fallback="-"),
    AttributeSpec("tags", "Tags"),
)


# --- truncate -------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("length", "expected_length", "cut"),
    [(0, 0, False), (1, 1, False), (254, 254, False), (255, 255, False), (256, 255, True), (1000, 255, True)],
)
def test_truncate_at_255(length, expected_length, cut):
    value = "".join(str(i % 10) for i in range(length))
    result = truncate(value)
    assert len(result) == expected_length
    if cut:
        assert result == value[:254] + "…"
    else:
        assert result == value


def test_truncate_255_vs_256_exactly():
    assert truncate("x" * 255) == "x" * 255
    assert truncate("x" * 256) == "x" * 254 + "…"


# --- names ----------------------------------------------------------------------------


@pytest.mark.parametrize("name", [spec.default_name for spec in ATTRIBUTES if spec.standard_field is None])
def test_every_default_custom_name_is_accepted(name):
    check_attribute_name(name)


@pytest.mark.parametrize(
    "name", ["Client Since", "paid_subscriber", "Sub-Org 2", "Numéro de client", "Time Zone"]
)
def test_ordinary_names_are_accepted(name):
    check_attribute_name(name)


@pytest.mark.parametrize(
    ("name", "problem"),
    [
        ("Client.ID", r"\."),
        ("Balance $", r"\$"),
        ("Tags[0]", r"\[ \]"),
        ("Tags]", r"\]"),
        ("Who@", "@"),
        ("A|B", r"\|"),
        ('Quote"d', '"'),
        ("Back\\slash", r"\\"),
        ("", "empty"),
        ("   ", "empty"),
        (" Client ID", "spaces"),
        ("Client ID ", "spaces"),
        ("Tab\tbed", "control"),
        ("Name", "standard"),
        ("name", "standard"),
        ("Email", "standard"),
        ("Phone", "standard"),
        ("Signed up at", "standard"),
        ("signed_up_at", "standard"),
        ("External ID", "standard"),
    ],
)
def test_names_intercom_refuses_raise_naming_the_attribute(name, problem):
    with pytest.raises(InvalidAttributeName, match=problem) as raised:
        check_attribute_name(name, key="client_id")
    error = raised.value
    assert isinstance(error, PermanentError) and not error.transient
    assert error.code == "invalid_attribute_name"
    assert repr(name) in error.message and "'client_id'" in error.message


def test_resolve_names_defaults():
    assert resolve_names(SPECS, {}) == {
        "client_id": ("Client ID", True),
        "name": ("name", False),
        "tags": ("Tags", True),
    }


def test_resolve_names_checks_overrides():
    with pytest.raises(InvalidAttributeName, match=r"'Client\.ID'.*'client_id'"):
        resolve_names(SPECS, {"client_id": "Client.ID"})


def test_two_keys_on_one_name_is_refused():
    with pytest.raises(InvalidAttributeName, match="also the name of attribute 'client_id'"):
        resolve_names(SPECS, {"tags": "client id"})


def test_override_of_an_unknown_key_is_refused():
    with pytest.raises(InvalidAttributeName, match="no attribute 'client_idd'"):
        resolve_names(SPECS, {"client_idd": "Client Number"})


def test_mapping_name_onto_the_standard_name_is_refused():
    with pytest.raises(InvalidAttributeName, match="standard"):
        resolve_names(SPECS, {"name": "Name"})


# --- build_update ---------------------------------------------------------------------


def test_build_update_splits_custom_and_standard():
    custom, standard = build_update({"client_id": "131446", "name": "Sami Ruhsuf", "tags": "VIP"}, SPECS, {})
    assert custom == {"Client ID": "131446", "Tags": "VIP"}
    assert standard == {"name": "Sami Ruhsuf"}


def test_build_update_renames():
    custom, standard = build_update(
        {"client_id": "131446", "name": "Sami Ruhsuf", "tags": "VIP"},
        SPECS,
        {"client_id": "Platform Client ID"},
    )
    assert custom == {"Platform Client ID": "131446", "Tags": "VIP"}
    assert standard == {"name": "Sami Ruhsuf"}


def test_name_mapped_to_a_custom_attribute_goes_there():
    custom, standard = build_update({"client_id": "1", "name": "Sami Ruhsuf"}, SPECS, {"name": "Client Name"})
    assert custom == {"Client ID": "1", "Client Name": "Sami Ruhsuf"}
    assert standard == {}


def test_none_leaves_a_standard_field_alone():
    custom, standard = build_update({"client_id": "-", "name": None, "tags": "-"}, SPECS, {})
    assert custom == {"Client ID": "-", "Tags": "-"}
    assert standard == {}


def test_none_on_a_custom_attribute_writes_the_fallback():
    custom, standard = build_update({"client_id": "-", "name": None}, SPECS, {"name": "Client Name"})
    assert custom == {"Client ID": "-", "Client Name": "-"}
    assert standard == {}


def test_none_without_a_fallback_writes_nothing():
    custom, _ = build_update({"client_id": None, "tags": "VIP"}, SPECS, {})
    assert custom == {"Tags": "VIP"}


def test_absent_keys_and_unknown_keys_are_not_written():
    custom, standard = build_update({"tags": "VIP", "insurance": "Blue Cross"}, SPECS, {})
    assert custom == {"Tags": "VIP"}
    assert standard == {}


def test_build_update_truncates_custom_and_standard_values():
    custom, standard = build_update({"tags": "t" * 300, "name": "n" * 256, "client_id": "c" * 255}, SPECS, {})
    assert custom["Tags"] == "t" * 254 + "…"
    assert custom["Client ID"] == "c" * 255
    assert standard["name"] == "n" * 254 + "…"


def test_build_update_refuses_a_bad_name_before_anything_is_written():
    with pytest.raises(InvalidAttributeName, match=r"'Tags\$'.*'tags'"):
        build_update({"tags": "VIP"}, SPECS, {"tags": "Tags$"})
