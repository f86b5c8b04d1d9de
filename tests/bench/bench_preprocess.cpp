// Times decode + preprocess of one image file, the same source built natively and for wasm.
// scripts/bench-preprocess runs both and prints the ratio; never part of the tests.
//
//   bench_preprocess IMAGE [RUNS] [THREADS] prints {"runs": N, "median_ms": ..., "p10_ms": ..., "p90_ms": ...}
//   bench_preprocess --make-jpeg OUT SIDE  writes a SIDE x SIDE test JPEG (quality 90)
#include <algorithm>
#include <chrono>
#include <cstdio>
#include <opencv2/core.hpp>
#include <opencv2/imgcodecs.hpp>
#include <opencv2/imgproc.hpp>
#include <string>
#include <vector>

#include "loupe/loupe.h"

int main(int argc, char** argv) {
  try {
    if (argc == 4 && std::string(argv[1]) == "--make-jpeg") {
      // Smooth shapes plus noise: closer to a photograph than a flat pattern, so the entropy
      // decoder does representative work.
      const int side = std::stoi(argv[3]);
      cv::Mat img(side, side, CV_8UC3);
      cv::randn(img, cv::Scalar(128, 110, 140), cv::Scalar(25, 25, 25));
      for (int i = 0; i < 40; ++i) {
        cv::circle(img, {(i * 97) % side, (i * 53) % side}, side / 12 + i, cv::Scalar(i * 6, 255 - i * 5, i * 3), -1);
      }
      cv::GaussianBlur(img, img, {5, 5}, 1.5);
      return cv::imwrite(argv[2], img, {cv::IMWRITE_JPEG_QUALITY, 90}) ? 0 : 1;
    }
    if (argc < 2) {
      std::fprintf(stderr, "usage: bench_preprocess IMAGE [RUNS] | --make-jpeg OUT SIDE\n");
      return 2;
    }
    const int runs = argc > 2 ? std::stoi(argv[2]) : 50;
    // OpenCV parallelises colour conversion and resizing natively; the wasm build is single-threaded.
    // Default: one thread on both sides, for a like-for-like comparison.
    cv::setNumThreads(argc > 3 ? std::stoi(argv[3]) : 1);
    const std::vector<uint8_t> bytes = loupe::read_file(argv[1]);
    const loupe::PreprocessSpec spec = loupe::PreprocessSpec::imagenet(224);
    std::vector<double> ms;
    double checksum = 0;
    for (int i = 0; i < runs + 3; ++i) {
      const auto start = std::chrono::steady_clock::now();
      const loupe::Tensor t = loupe::preprocess(loupe::decode_image(bytes), spec);
      const auto end = std::chrono::steady_clock::now();
      checksum += t.data[t.data.size() / 2];
      if (i >= 3) ms.push_back(std::chrono::duration<double, std::milli>(end - start).count());  // 3 warm-ups
    }
    std::sort(ms.begin(), ms.end());
    std::printf("{\"runs\": %d, \"median_ms\": %.3f, \"p10_ms\": %.3f, \"p90_ms\": %.3f, \"checksum\": %.6f}\n", runs,
                ms[ms.size() / 2], ms[ms.size() / 10], ms[ms.size() * 9 / 10], checksum);
  } catch (const std::exception& e) {
    std::fprintf(stderr, "bench_preprocess: %s\n", e.what());
    return 1;
  }
  return 0;
}
