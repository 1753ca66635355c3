"""Member visits and coupon triggers from the stores' beacons — issue 6."""
