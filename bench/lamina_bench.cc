// SPDX-License-Identifier: Apache-2.0
// lamina_bench: one workload against one directory, one JSON line of timings on stdout.
//
//   lamina_bench WORKLOAD DIR [key=value...]     time a workload (see --help for the list)
//   lamina_bench gen-tree DIR top=T sub=S files=F size=B prefix=P seed=N
//   lamina_bench gen-files DIR sizes=4k,1m,.. seed=N
//   lamina_bench warm DIR...                      read every file (warm the page cache)
//
// bench/run_bench.py builds the trees, mounts each configuration, calls this and aggregates.
// On failure it prints {"error": "...", "errno": N} and exits 1.
#include <fcntl.h>

#include <cstdio>
#include <cstring>
#include <iostream>

#include "bench_util.h"
#include "tree_ops.h"
#include "workloads.h"

namespace lamina::bench {
namespace {

void usage() {
  std::cerr << "usage: lamina_bench WORKLOAD DIR [key=value...]\n"
               "       lamina_bench gen-tree DIR top=T sub=S files=F size=B prefix=P seed=N\n"
               "       lamina_bench gen-files DIR sizes=4k,1m,.. seed=N\n"
               "       lamina_bench warm DIR...\n"
               "workloads:\n"
            << workload_help();
}

void print_counts(const char* what, const TreeCount& c) {
  Result r(what);
  r.note("files", static_cast<double>(c.files));
  r.note("dirs", static_cast<double>(c.dirs));
  r.note("bytes", static_cast<double>(c.bytes));
  std::cout << r.json() << std::endl;
}

int run(int argc, char** argv) {
  if (argc < 3) {
    usage();
    return argc == 2 && (std::strcmp(argv[1], "--help") == 0 || std::strcmp(argv[1], "-h") == 0)
               ? 0
               : 2;
  }
  std::string cmd = argv[1];
  if (cmd == "warm") {
    TreeCount total;
    for (int i = 2; i < argc; ++i) {
      TreeCount c = warm(argv[i]);
      total.files += c.files;
      total.dirs += c.dirs;
      total.bytes += c.bytes;
    }
    print_counts("warm", total);
    return 0;
  }
  Args args(argc, argv, 3);
  std::string dir = argv[2];
  if (cmd == "gen-tree") {
    print_counts(
        "gen-tree",
        gen_tree(dir, static_cast<int>(args.num("top", 10)), static_cast<int>(args.num("sub", 0)),
                 static_cast<int>(args.num("files", 100)), args.size("size", 0),
                 args.str("prefix", ""), static_cast<uint64_t>(args.num("seed", 1))));
    return 0;
  }
  if (cmd == "gen-files") {
    std::vector<uint64_t> sizes;
    for (const std::string& s : args.list("sizes", "4k")) sizes.push_back(parse_size(s));
    print_counts("gen-files", gen_files(dir, sizes, static_cast<uint64_t>(args.num("seed", 1))));
    return 0;
  }
  WorkloadFn fn = find_workload(cmd);
  if (fn == nullptr) {
    std::cerr << "lamina_bench: unknown workload '" << cmd << "'\n";
    usage();
    return 2;
  }
  Fd root = open_at(AT_FDCWD, dir, O_RDONLY | O_DIRECTORY);
  Result result(cmd);
  fn(Context{dir, root.get(), args}, result);
  std::cout << result.json() << std::endl;
  return 0;
}

}  // namespace
}  // namespace lamina::bench

int main(int argc, char** argv) {
  try {
    return lamina::bench::run(argc, argv);
  } catch (const lamina::bench::BenchError& e) {
    std::string msg = e.code != 0 ? e.what + ": " + std::strerror(e.code) : e.what;
    for (char& c : msg) {
      if (c == '"' || c == '\\') c = '\'';
    }
    std::cout << "{\"error\":\"" << msg << "\",\"errno\":" << e.code << "}" << std::endl;
    std::cerr << "lamina_bench: " << msg << "\n";
    return 1;
  } catch (const std::exception& e) {
    std::cout << "{\"error\":\"" << e.what() << "\",\"errno\":0}" << std::endl;
    std::cerr << "lamina_bench: " << e.what() << "\n";
    return 1;
  }
}
