"""Events for users: pub/sub delivery across API processes (bus), notification streams
(notifications), feed and render events (feed, render)."""
