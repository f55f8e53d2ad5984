"""What a long run needs from its host: the state file and its saver, systemd notify, the Service
that ties them to a run. Imports model, maps, device, net and modbus."""
