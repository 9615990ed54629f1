"""A faithful local OpenAI / Azure OpenAI Files + Batches server.

    from batchyard.emulator import EmulatorConfig, EmulatorServer, create_app

    with EmulatorServer(EmulatorConfig(flavor="openai", validation_delay=0)) as srv:
        client = OpenAI(base_url=srv.base_url + "/v1", api_key="x")
        ...
        srv.emulator.stats()

See docs/emulator.md for every knob and the ``/_emulator/*`` admin routes.
"""

from batchyard.emulator.config import EmulatorConfig, FaultKnobs
from batchyard.emulator.server import EmulatorServer, create_app, serve
from batchyard.emulator.state import Emulator

__all__ = ["Emulator", "EmulatorConfig", "EmulatorServer", "FaultKnobs", "create_app", "serve"]
