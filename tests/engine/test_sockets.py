"""Which output may feed which input: exact match, declared conversions, and the any type."""

from gouache.engine.sockets import ANY, SocketType, SocketTypes


def test_compatibility_rule():
    types = SocketTypes()
    types.add(SocketType("IMAGE"))
    types.add(SocketType("MASK", converts_to=("IMAGE",)))
    assert types.compatible("IMAGE", "IMAGE")
    assert types.compatible("INT", "FLOAT")  # a declared conversion
    assert not types.compatible("FLOAT", "INT")  # conversions are one-way
    assert types.compatible("MASK", "IMAGE") and not types.compatible("IMAGE", "MASK")
    assert types.compatible("IMAGE", ANY) and types.compatible(ANY, "IMAGE")
    assert not types.compatible("IMAGE", "STRING")


def test_identical_re_registration_is_harmless():
    types = SocketTypes()
    types.add(SocketType("IMAGE", "#fff"))
    types.add(SocketType("IMAGE", "#fff"))
    assert [t.name for t in types.all()].count("IMAGE") == 1
