"""HQ's side of the channel API (issue 18): requests from web shops and member apps over MQTT 5
request/response, and the reservations HQ holds for them and for the stores' clerks (docs/channel.md)."""
