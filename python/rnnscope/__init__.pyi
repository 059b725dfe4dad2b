# Type stub of the public API (the implementation and its documentation: __init__.py).
import os
from typing import Any, Dict, List, Mapping, Optional, Sequence, Tuple, Union

import numpy as np

PathLike = Union[str, os.PathLike[str]]
State = Union[np.ndarray, Tuple[np.ndarray, Optional[np.ndarray]], None]

__version__: str

class Model:
    @classmethod
    def load(cls, path: PathLike, dtype: str = "float32") -> Model: ...
    @classmethod
    def from_torch(
        cls,
        module_or_state_dict: Any,
        embedding: Any = None,
        decoder: Any = None,
        nonlinearity: Optional[str] = None,
        dtype: str = "float32",
    ) -> Model: ...
    def save(self, path: PathLike) -> None: ...
    def astype(self, dtype: str) -> Model: ...
    @property
    def dtype(self) -> str: ...
    @property
    def config(self) -> Dict[str, Any]: ...
    @property
    def metadata(self) -> Dict[str, str]: ...
    def state_dict(self) -> Dict[str, np.ndarray]: ...
    def forward(
        self, tokens: Any, state: State = None
    ) -> Tuple[np.ndarray, Tuple[np.ndarray, Optional[np.ndarray]]]: ...
    def loss_and_grads(
        self, tokens: Any, targets: Any, state: State = None
    ) -> Tuple[float, Dict[str, np.ndarray]]: ...
    def hidden_grads(
        self, tokens: Any, targets: Any, state: State = None
    ) -> Tuple[List[np.ndarray], Optional[List[np.ndarray]]]: ...
    def gradflow(
        self,
        tokens: Any = None,
        targets: Any = None,
        *,
        bptt: int = 128,
        batch: int = 16,
        text: Optional[PathLike] = None,
        vocab_file: Optional[PathLike] = None,
        seed: int = 0,
        jacobian: bool = True,
        jacobian_batch: int = 0,
        precision: str = "f64",
        show_window: int = 0,
        show_targets: Optional[Sequence[int]] = None,
        threads: int = 0,
    ) -> GradFlow: ...

class GradFlow:
    summary: Dict[str, Any]
    profile: np.ndarray
    profile_cell: Optional[np.ndarray]
    pairs: np.ndarray
    influence: np.ndarray
    influence_cell: Optional[np.ndarray]
    jacobian_log_singular_values: List[np.ndarray]
    jacobian_distances: List[np.ndarray]
    spectrum: List[Dict[str, np.ndarray]]
    regime: str
    decay_per_step: Optional[float]
    theory: Dict[str, Any]
    def to_dict(self) -> Dict[str, Any]: ...

def train(corpus: Optional[PathLike] = None, out: Optional[PathLike] = None, **options: Any) -> None: ...
def task(name: str, **options: Any) -> None: ...
def experiment(**options: Any) -> None: ...
def report(run_dir: PathLike, **options: Any) -> str: ...
