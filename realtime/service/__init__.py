"""The gRPC WarehouseVisionService."""
