import pytest

from geociss.registry import Registry


def test_register_get_and_list():
    reg: Registry[type] = Registry("method")

    @reg.register("MiB")
    class MiB:
        pass

    assert reg.get("mib") is MiB and reg.get("MIB") is MiB
    assert "mib" in reg and "plop" not in reg and 3 not in reg
    assert reg.names() == ["mib"] and list(reg) == ["mib"] and len(reg) == 1


def test_miss_lists_choices_and_duplicates_fail():
    reg: Registry[int] = Registry("encoder")
    reg.register("b")(2)
    reg.register("a")(1)
    with pytest.raises(KeyError, match="unknown encoder 'c'; choose one of: a, b"):
        reg.get("c")
    reg.register("a")(1)  # same object again is fine
    with pytest.raises(KeyError, match="already registered"):
        reg.register("a")(3)
