"""Tests of lmbook.testing.check_shape: what it accepts, what it rejects, and what its messages say."""

import numpy as np
import pytest
import torch

from lmbook.testing import ShapeError, check_shape


def test_returns_its_argument_unchanged():
    x = np.zeros((4, 3))
    assert check_shape(x, (4, 3), "x") is x


def test_shape_error_is_a_value_error():
    assert issubclass(ShapeError, ValueError)


def test_wrong_size_message_names_array_expected_and_actual_shapes():
    with pytest.raises(ShapeError) as info:
        check_shape(np.zeros((4, 3)), ("B", 2), "X")
    assert str(info.value) == "X: expected shape (B, 2), got (4, 3)"


def test_wrong_number_of_axes_is_a_shape_error():
    with pytest.raises(ShapeError) as info:
        check_shape(np.zeros((4, 3, 1)), ("B", 3), "X")
    message = str(info.value)
    assert "X" in message and "(B, 3)" in message and "(4, 3, 1)" in message


def test_one_dimensional_shapes_are_written_with_a_trailing_comma():
    with pytest.raises(ShapeError, match=r"b: expected shape \(3,\), got \(3, 1\)"):
        check_shape(np.zeros((3, 1)), (3,), "b")


def test_none_matches_any_size_and_is_shown_as_star():
    check_shape(np.zeros((7, 2)), (None, 2))
    with pytest.raises(ShapeError, match=r"expected shape \(\*, 2\), got \(7, 3\)"):
        check_shape(np.zeros((7, 3)), (None, 2))


def test_a_symbol_must_have_the_same_size_everywhere_in_one_call():
    check_shape(np.zeros((3, 3)), ("C", "C"), "M")
    with pytest.raises(ShapeError, match=r"M: expected shape \(C, C\), got \(3, 4\)"):
        check_shape(np.zeros((3, 4)), ("C", "C"), "M")


def test_different_symbols_may_have_different_sizes():
    check_shape(np.zeros((3, 4)), ("B", "C"))


def test_dims_carry_sizes_across_calls_and_appear_in_the_message():
    dims = {}
    check_shape(np.zeros((2, 5)), ("C_in", "C_out"), "W", dims)
    assert dims == {"C_in": 2, "C_out": 5}
    check_shape(np.zeros((8, 2)), ("B", "C_in"), "X", dims)
    assert dims["B"] == 8
    with pytest.raises(ShapeError) as info:
        check_shape(np.zeros((4, 3)), ("B2", "C_in"), "X", dims)
    assert str(info.value) == "X: expected shape (B2, C_in), got (4, 3) [C_in=2]"
    assert "B2" not in dims, "a failed check must not bind new symbols"


def test_works_on_torch_tensors():
    t = torch.zeros(4, 3)
    assert check_shape(t, ("B", 3), "t") is t
    with pytest.raises(ShapeError, match=r"t: expected shape \(B, 2\), got \(4, 3\)"):
        check_shape(t, ("B", 2), "t")


def test_objects_without_a_shape_and_bad_specs_are_type_errors():
    with pytest.raises(TypeError, match="x: expected an array"):
        check_shape([1, 2, 3], (3,), "x")
    with pytest.raises(TypeError, match="int, str or None"):
        check_shape(np.zeros(3), (3.0,), "x")


def test_check_choice_names_the_valid_options():
    from lmbook.testing import check_choice

    check_choice("tanh", {"tanh": 1, "relu": 2}, "activation")  # a valid name passes silently
    check_choice("val", ("train", "val"), "split")
    with pytest.raises(ValueError, match=r"^unknown split 'dev'; choose one of 'train', 'val'$"):
        check_choice("dev", ("train", "val"), "split")
    with pytest.raises(ValueError, match=r"unknown activation \['tanh'\]; choose one of 'tanh', 'relu'"):
        check_choice(["tanh"], {"tanh": 1, "relu": 2}, "activation")  # unhashable: an error, not a TypeError
