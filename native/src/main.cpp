// `loupe`: the native command-line tool. See `loupe --help`.
#include <cstdio>
#include <exception>

#include "commands.h"
#include "loupe/error.h"
#include "loupe/version.h"
#include "loupe/train/omp_wait.h"

int main(int argc, char** argv) {
  loupe::train::reexec_with_passive_omp_wait(argv);  // see omp_wait.h
  CLI::App app{"Loupe: train, evaluate and run medical image classifiers.\n"
               "Not a diagnostic device: outputs are for research and demonstration only."};
  app.set_version_flag("--version", std::string("loupe ") + loupe::version());
  app.require_subcommand(1);
  loupe::cli::add_info_command(app);
  loupe::cli::add_preprocess_command(app);
  loupe::cli::add_train_command(app);
  loupe::cli::add_eval_command(app);
  loupe::cli::add_baseline_command(app);
  loupe::cli::add_export_command(app);
  loupe::cli::add_inspect_command(app);
  loupe::cli::add_predict_command(app);
  loupe::cli::add_cv_command(app);
  loupe::cli::add_split_command(app);
  loupe::cli::add_quantize_command(app);
  loupe::cli::add_calibrate_command(app);
  loupe::cli::add_ood_threshold_command(app);
  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    return app.exit(e);
  } catch (const loupe::Error& e) {
    std::fprintf(stderr, "loupe: error (%s): %s\n", loupe::to_string(e.code()), e.what());
    return 1;
  } catch (const std::exception& e) {
    std::fprintf(stderr, "loupe: error: %s\n", e.what());
    return 1;
  }
  return 0;
}
