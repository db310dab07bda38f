"""Model detection: is this model backdoored? DRMGuard (regression), Neural
Cleanse and FeatureRE (classification and regression), an ensemble of several,
thresholds calibrated on known-clean models, and the scan report."""

from . import drmguard, ensemble, feature_re, neural_cleanse  # noqa: F401  (registers)
from . import mitigation  # noqa: F401,E402  (registers the drmguard purifier)
from .calibration import Calibration, calibrate
from .report import build_detector, default_method, scan_models

__all__ = ["Calibration", "build_detector", "calibrate", "default_method", "scan_models"]
