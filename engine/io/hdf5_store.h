// HDF5 datasets as volume stores: hyperslab reads of any box, and the crash-safe chunk writer
// with its ".progress" sidecar (the design is explained at the top of volume_store.h).
#pragma once

#include <memory>
#include <string>

#include "absl/status/statusor.h"
#include "engine/io/volume_store.h"

namespace elektronn {

absl::StatusOr<std::unique_ptr<VolumeReader>> OpenHdf5Reader(const VolumeLocation& location,
                                                             const VolumeReaderOptions& options);
// `options` are validated by VolumeWriter::Open (chunk already cut to the shape, no compression).
absl::StatusOr<std::unique_ptr<VolumeWriter>> OpenHdf5Writer(const VolumeLocation& location,
                                                             const VolumeWriterOptions& options);

// The sidecar that records the durable chunks of the HDF5 output `location`:
// "<file>.<dataset with '/' as '.'>.progress".
std::string Hdf5ProgressPath(const VolumeLocation& location);

}  // namespace elektronn
