"""nasc.devices.emulated"""
