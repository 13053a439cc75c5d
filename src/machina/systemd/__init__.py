"""systemd unit syntax (unit) and the units machina writes (render)."""
