#include "npy.h"

#include <fstream>

namespace loupe::cli {

void write_npy(const std::string& path, const Tensor& tensor) {
  std::string shape;
  for (int64_t d : tensor.shape) shape += std::to_string(d) + ",";
  if (tensor.shape.size() > 1) shape.pop_back();  // "(3,)" keeps its comma, "(1,3,224,224)" drops it
  std::string header = "{'descr': '<f4', 'fortran_order': False, 'shape': (" + shape + "), }";
  // Format 1.0: magic, version, uint16 header length; the header is padded so data is 64-aligned.
  const size_t prefix = 10;
  header.append(64 - (prefix + header.size() + 1) % 64, ' ');
  header += '\n';
  std::ofstream out(path, std::ios::binary);
  if (!out) throw Error(ErrorCode::Io, path + ": cannot create file");
  const uint16_t header_len = static_cast<uint16_t>(header.size());
  out.write("\x93NUMPY\x01\x00", 8);
  out.put(static_cast<char>(header_len & 0xff)).put(static_cast<char>(header_len >> 8));
  out << header;
  out.write(reinterpret_cast<const char*>(tensor.data.data()),
            static_cast<std::streamsize>(tensor.data.size() * sizeof(float)));
  if (!out) throw Error(ErrorCode::Io, path + ": write failed (disk full?)");
}

}  // namespace loupe::cli
