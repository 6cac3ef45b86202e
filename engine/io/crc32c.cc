// Table-driven CRC-32C; Abseil 20220623 (Debian 12) ships no CRC, so we carry our own.
#include "engine/io/crc32c.h"

#include <array>

namespace elektronn {
namespace {

constexpr uint32_t kCastagnoliReflected = 0x82F63B78u;

// One byte at a time is ~1 ns/byte, which is plenty for event files (the largest record is a
// preview PNG of a few hundred KiB); a hardware (SSE4.2) path would need runtime dispatch.
constexpr std::array<uint32_t, 256> MakeTable() {
  std::array<uint32_t, 256> table{};
  for (uint32_t i = 0; i < 256; ++i) {
    uint32_t c = i;
    for (int bit = 0; bit < 8; ++bit) c = (c & 1u) ? (c >> 1) ^ kCastagnoliReflected : c >> 1;
    table[i] = c;
  }
  return table;
}

constexpr std::array<uint32_t, 256> kTable = MakeTable();

}  // namespace

uint32_t Crc32cExtend(uint32_t crc, const void* data, size_t n) {
  const auto* p = static_cast<const unsigned char*>(data);
  // The stored CRC is post-inverted; undo that to continue the register, redo it at the end.
  uint32_t c = ~crc;
  for (size_t i = 0; i < n; ++i) c = kTable[(c ^ p[i]) & 0xFFu] ^ (c >> 8);
  return ~c;
}

}  // namespace elektronn
