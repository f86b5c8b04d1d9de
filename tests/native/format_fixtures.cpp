#include "format_fixtures.h"

#include <flatbuffers/flatbuffers.h>
#include <zip.h>

#include <algorithm>
#include <functional>
#include <stdexcept>

namespace fs = std::filesystem;

namespace loupe::test {

std::vector<uint8_t> npy_u8(const std::vector<int64_t>& shape, const std::vector<uint8_t>& data) {
  std::string dims;
  for (int64_t d : shape) dims += std::to_string(d) + ",";
  if (shape.size() > 1) dims.pop_back();
  return npy_u8_with_shape("(" + dims + ")", data);
}

std::vector<uint8_t> npy_u8_with_shape(const std::string& shape, const std::vector<uint8_t>& data) {
  std::string header = "{'descr': '|u1', 'fortran_order': False, 'shape': " + shape + ", }";
  header.append(64 - (10 + header.size() + 1) % 64, ' ');
  header += '\n';
  std::string bytes = "\x93NUMPY";
  bytes += '\x01';
  bytes += '\x00';
  bytes += static_cast<char>(header.size() & 0xff);
  bytes += static_cast<char>(header.size() >> 8);
  bytes += header;
  bytes.append(data.begin(), data.end());
  return std::vector<uint8_t>(bytes.begin(), bytes.end());
}

std::string write_zip(const fs::path& path, const std::vector<std::pair<std::string, std::vector<uint8_t>>>& entries) {
  int error = 0;
  zip_t* archive = zip_open(path.c_str(), ZIP_CREATE | ZIP_TRUNCATE, &error);
  if (!archive) throw std::runtime_error("cannot create " + path.string());
  for (const auto& [name, bytes] : entries) {  // zip_source_buffer does not copy: `entries` outlives zip_close
    zip_file_add(archive, name.c_str(), zip_source_buffer(archive, bytes.data(), bytes.size(), 0), ZIP_FL_OVERWRITE);
  }
  if (zip_close(archive) != 0) throw std::runtime_error("cannot write " + path.string());
  return path.string();
}

// A MedMNIST-style .npz: 12x12 images, 2 classes, train/val/test of 10/4/6 images.
std::string write_npz(const fs::path& path) {
  std::vector<std::pair<std::string, std::vector<uint8_t>>> entries;
  for (const auto& [prefix, n] : {std::pair{"train", 10}, std::pair{"val", 4}, std::pair{"test", 6}}) {
    std::vector<uint8_t> pixels(static_cast<size_t>(n) * 144), labels(static_cast<size_t>(n));
    for (int i = 0; i < n; ++i) {
      labels[static_cast<size_t>(i)] = static_cast<uint8_t>(i % 2);
      std::fill(pixels.begin() + i * 144, pixels.begin() + (i + 1) * 144, static_cast<uint8_t>(i % 2 ? 200 : 30));
    }
    entries.emplace_back(std::string(prefix) + "_images.npy", npy_u8({n, 12, 12}, pixels));
    entries.emplace_back(std::string(prefix) + "_labels.npy", npy_u8({n, 1}, labels));
  }
  return write_zip(path, entries);
}


static flatbuffers::voffset_t slot(int id) { return static_cast<flatbuffers::voffset_t>(4 + 2 * id); }

// One CONV_2D (int8 per-channel weights [2, 1, 1, 3], int32 bias) on a uint8 input [1, 4, 4, 3].
std::vector<uint8_t> tiny_tflite() {
  namespace fb = flatbuffers;
  fb::FlatBufferBuilder b;
  const auto table = [&](const std::function<void()>& add) {
    const auto start = b.StartTable();
    add();
    return fb::Offset<fb::Table>(b.EndTable(start));
  };
  // Buffers: 0 empty (the convention), 1 weights, 2 bias.
  const std::vector<int8_t> weights{1, 2, 3, -4, -5, -6};
  const std::vector<int32_t> bias{100, -200};
  const auto w_bytes = b.CreateVector(reinterpret_cast<const uint8_t*>(weights.data()), weights.size());
  const auto b_bytes = b.CreateVector(reinterpret_cast<const uint8_t*>(bias.data()), bias.size() * 4);
  std::vector<fb::Offset<fb::Table>> buffers{table([] {}), table([&] { b.AddOffset(slot(0), w_bytes); }),
                                             table([&] { b.AddOffset(slot(0), b_bytes); })};
  const auto quant = [&](std::vector<float> scale, std::vector<int64_t> zero, int axis) {
    const auto s = b.CreateVector(scale);
    const auto z = b.CreateVector(zero);
    return table([&] {
      b.AddOffset(slot(2), s);
      b.AddOffset(slot(3), z);
      b.AddElement<int32_t>(slot(6), axis, 0);
    });
  };
  const auto tensor = [&](const char* name, std::vector<int32_t> shape, int8_t type, uint32_t buffer,
                          fb::Offset<fb::Table> q) {
    const auto n = b.CreateString(name);
    const auto s = b.CreateVector(shape);
    return table([&] {
      b.AddOffset(slot(0), s);
      b.AddElement<int8_t>(slot(1), type, 0);
      b.AddElement<uint32_t>(slot(2), buffer, 0);
      b.AddOffset(slot(3), n);
      b.AddOffset(slot(4), q);
    });
  };
  std::vector<fb::Offset<fb::Table>> tensors{
      tensor("input", {1, 4, 4, 3}, 3, 0, quant({1.0f / 128}, {128}, 0)),
      tensor("conv/weights", {2, 1, 1, 3}, 9, 1, quant({0.5f, 0.25f}, {0, 0}, 0)),
      tensor("conv/bias", {2}, 2, 2, quant({0.5f / 128, 0.25f / 128}, {0, 0}, 0)),
      tensor("output", {1, 4, 4, 2}, 3, 0, quant({0.05f}, {10}, 0)),
  };
  const auto tensors_vec = b.CreateVector(tensors);
  const auto in_vec = b.CreateVector(std::vector<int32_t>{0});
  const auto out_vec = b.CreateVector(std::vector<int32_t>{3});
  const auto op_in = b.CreateVector(std::vector<int32_t>{0, 1, 2});
  const auto op_out = b.CreateVector(std::vector<int32_t>{3});
  const auto conv_options = table([&] {
    b.AddElement<int8_t>(slot(0), 1, 0);    // VALID
    b.AddElement<int32_t>(slot(1), 1, 0);   // stride_w
    b.AddElement<int32_t>(slot(2), 1, 0);   // stride_h
    b.AddElement<int8_t>(slot(3), 3, 0);    // RELU6
  });
  const auto op = table([&] {
    b.AddElement<uint32_t>(slot(0), 0, 0);
    b.AddOffset(slot(1), op_in);
    b.AddOffset(slot(2), op_out);
    b.AddElement<uint8_t>(slot(3), 1, 0);   // BuiltinOptions_Conv2DOptions
    b.AddOffset(slot(4), conv_options);
  });
  const auto ops_vec = b.CreateVector(std::vector<fb::Offset<fb::Table>>{op});
  const auto graph_name = b.CreateString("main");
  const auto graph = table([&] {
    b.AddOffset(slot(0), tensors_vec);
    b.AddOffset(slot(1), in_vec);
    b.AddOffset(slot(2), out_vec);
    b.AddOffset(slot(3), ops_vec);
    b.AddOffset(slot(4), graph_name);
  });
  const auto code = table([&] { b.AddElement<int8_t>(slot(0), 3, 0); });  // CONV_2D
  const auto codes_vec = b.CreateVector(std::vector<fb::Offset<fb::Table>>{code});
  const auto graphs_vec = b.CreateVector(std::vector<fb::Offset<fb::Table>>{graph});
  const auto description = b.CreateString("tiny test model");
  const auto buffers_vec = b.CreateVector(buffers);
  const auto model = table([&] {
    b.AddElement<uint32_t>(slot(0), 3, 0);
    b.AddOffset(slot(1), codes_vec);
    b.AddOffset(slot(2), graphs_vec);
    b.AddOffset(slot(3), description);
    b.AddOffset(slot(4), buffers_vec);
  });
  b.Finish(model, "TFL3");
  return {b.GetBufferPointer(), b.GetBufferPointer() + b.GetSize()};
}

}  // namespace loupe::test
