"""memsim: will it fit, how to make it fit fast, and is the answer true.

The analytic core never imports torch: `import memsim` stays light.
"""

from .catalog import hardware_names, load_hardware, load_model, model_names
from .errors import InputError
from .fit import largest_fitting
from .predict import peak, predict
from .report import Report
from .workload import Workload

__all__ = [
    "InputError", "Report", "Workload", "hardware_names", "largest_fitting", "load_hardware",
    "load_model", "model_names", "peak", "predict",
]
__version__ = "0.1.0"
