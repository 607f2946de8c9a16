"""What a run keeps: the model dir and its run record, the resume rule, the save schedule,
backups and preemption, epoch checkpoints. Imports no training loop.

The model dir layout and the resume rule import no TensorFlow; the savers load on first use.
"""

from tfdist import _lazy
from tfdist.checkpoint.model_dir import CheckpointError, ModelDir, ModelDirError

_LAZY = {"BackupAndRestore": "backup", "EpochCheckpointWriter": "epoch_checkpoints",
         "EpochCheckpointCallback": "epoch_checkpoints", "SaveSchedule": "schedule",
         "save_on_sigterm": "preemption"}

__all__ = ["CheckpointError", "ModelDir", "ModelDirError", *_LAZY]

__getattr__ = _lazy.attributes(__name__, _LAZY)
