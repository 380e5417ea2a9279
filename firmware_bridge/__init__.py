"""nasc.firmware_bridge"""
