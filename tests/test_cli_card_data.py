"""The data set a command works on, from the flag or the model card."""

from dataclasses import replace

import pytest

from backdoorguard.cli.common import card_data
from backdoorguard.errors import BadInput


def test_card_data_takes_the_flag_else_the_card_and_checks_the_task(digits):
    card = {"training": {"dataset": "digits"}, "task": digits.task.to_dict()}
    name, data = card_data(card, None)
    assert name == "digits" and data.task == digits.task
    with pytest.raises(BadInput, match="^--dataset is required"):
        card_data({"task": digits.task.to_dict()}, None)
    other = replace(digits.task, num_outputs=3).to_dict()
    with pytest.raises(BadInput, match="^the model was trained for classification .* 3 outputs"):
        card_data({**card, "task": other}, "digits")
