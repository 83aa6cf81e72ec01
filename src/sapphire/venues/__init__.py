"""Exchange adapters and the local Bybit-compatible exchange (`sapphire.venues.exchange`)."""
