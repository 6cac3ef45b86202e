// CRC-32C (Castagnoli), the checksum that frames TFRecord / TensorBoard event records.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string_view>

namespace elektronn {

// Extends `crc` (the CRC-32C of the bytes seen so far; 0 for none) by `n` more bytes, so a
// checksum can be computed piecewise: Crc32cExtend(Crc32c(a), b) == Crc32c(a + b).
uint32_t Crc32cExtend(uint32_t crc, const void* data, size_t n);

// CRC-32C of `data`: reflected polynomial 0x82F63B78, initial value and final xor 0xFFFFFFFF.
// Crc32c("123456789") == 0xE3069283.
inline uint32_t Crc32c(std::string_view data) { return Crc32cExtend(0, data.data(), data.size()); }

// The "masked" form TFRecord stores. A CRC over bytes that themselves contain CRCs is weak, so
// TensorFlow rotates and offsets every stored CRC: ((crc >> 15) | (crc << 17)) + 0xA282EAD8.
inline uint32_t MaskCrc32c(uint32_t crc) { return ((crc >> 15) | (crc << 17)) + 0xA282EAD8u; }

// MaskCrc32c(Crc32c(data)); MaskedCrc32c("123456789") == 0xC78AB0E5.
inline uint32_t MaskedCrc32c(std::string_view data) { return MaskCrc32c(Crc32c(data)); }

}  // namespace elektronn
