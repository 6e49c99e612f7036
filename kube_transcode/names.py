"""Names both sides agree on and users see: the CRDs' coordinates and the ladder's files.

Queue and exchange names are part of the wire topology and live with it in `messages.py`;
metric names in `metric_names.py`.
"""

from __future__ import annotations

from typing import Final

# The API group and version of every kube-transcode resource (fixed once, then kept).
GROUP: Final = "kubetranscode.io"
VERSION: Final = "v1alpha1"
JOB_PLURAL: Final = "transcodejobs"
POOL_PLURAL: Final = "workerpools"
TEMPLATE_PLURAL: Final = "transcodetemplates"

# The ladder's entry point, written last: its presence means the ladder is complete.
MASTER_PLAYLIST_NAME: Final = "master.m3u8"
