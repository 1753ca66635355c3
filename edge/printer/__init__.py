"""Receipt printers: an ESC/POS encoder (pure, :mod:`.escpos`), the port it is written to (:mod:`.port`)
and the one call a till makes to print a receipt (:mod:`.receipt`)."""
