"""Attack zoo: the backdoors defenses are measured against.

One name per idea across modalities (ALGORITHMS.md, "Attacks"):

    badnets      image: a patch in a corner;  series: a fixed pattern over a window ("static")
    blended      image and series: blend with a fixed pattern
    wanet        image: a smooth warp;  series: a smooth time warp
    sig          image and series: additive sinusoid, clean-label
    powerline    series: additive sinusoid, poison-label
    input-aware  image: a per-input trigger learnt with the model
    localized    tabular regression: wrong labels in a ball of the input space
"""

from .base import Attack, create_attack, register_attack
from .blend import Blended
from .input_aware import InputAware
from .localized import Localized
from .patch import BadNets
from .series import SeriesPattern
from .sinusoid import SIG, Powerline
from .warp import TimeWarp, WaNet

register_attack("badnets", "BadNets: a patch in a corner (images); a fixed pattern over a "
                "window (series)", {"image": BadNets, "series": SeriesPattern})
register_attack("blended", "Blended: mix every input with a fixed pattern (α = 0.15)",
                {"image": Blended, "series": Blended})
register_attack("wanet", "WaNet: a smooth, nearly invisible warp (images); a time warp (series)",
                {"image": WaNet, "series": TimeWarp})
register_attack("sig", "SIG: additive sinusoid on target-class samples only (clean-label)",
                {"image": SIG, "series": SIG})
register_attack("powerline", "additive sinusoid like mains interference (poison-label)",
                {"series": Powerline})
register_attack("input-aware", "Input-aware dynamic backdoor: a per-input trigger generator "
                "trained with the model", {"image": InputAware})
register_attack("localized", "localised poisoning: wrong labels in a ball of the input space, "
                "clean shell around it", {"tabular": Localized}, tasks=("regression",))

__all__ = ["Attack", "create_attack", "register_attack"]
