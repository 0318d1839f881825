"""Using a trained model: predictions written to files and deployment.

Holds ``seglab predict`` from a checkpoint alone, masks and overlays (``predict``), ONNX /
TorchScript export (``export``) with its checks and input contract (``export_checks``) and the
NIfTI writer that puts CT predictions back on the scan's grid (``volume_writer``). Test-time
augmentation and sliding-window inference are model-level functions in
:mod:`seglab.models.inference`, re-exported here, because tasks use them during validation.
May import data, models, metrics, tasks and runs; never the CLI.
"""

from seglab.models.inference import infer

__all__ = ["infer"]
