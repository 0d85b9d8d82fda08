"""Events for users: notification records now, live delivery with the subscriptions issue."""
