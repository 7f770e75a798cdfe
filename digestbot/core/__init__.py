"""The pure core: values in, values out. Nothing here touches a database, a clock or the network."""
