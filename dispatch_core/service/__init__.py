"""The service: one folder of state, the dispatcher, and the parts the node, the routes
and the panel share (see `_service.DispatchService`).

    service.config_view(), service.edit_config(service.edits.add_server(...))
    service.templates  list, load, save, rename, delete (announced)
    service.jobs       spec, run, submit, cancel, fan_out, run_many, record, open_file,
                       open_output
    service.monitor    status, test, inventory, calibrate, free
    service.fleet      list, start, stop, log of managed workers; gpus, start_per_gpu
"""

from ._activity import JobRecord
from ._config_store import MASK, Edit
from ._jobs import fan_out_seeds
from ._service import DispatchService
from ._support import adopt_folder

__all__ = ["MASK", "DispatchService", "Edit", "JobRecord", "adopt_folder", "fan_out_seeds"]
