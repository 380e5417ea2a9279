"""nasc.devices"""
