from tenpo.sandbox import Mosquitto, free_port, wait_for_port

__all__ = ["Mosquitto", "free_port", "wait_for_port"]
