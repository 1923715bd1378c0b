// bench/disk_ceiling.cpp — the most durable receipts per second the benchmark's disk allows, with
// no SMTP, no parsing and no event loop: WRITERS threads each create a file in DIR/tmp, write SIZE
// bytes and fdatasync it; one committer renames what is ready into DIR/incoming and fsyncs that
// directory once per batch. That is the file-system work behind every durable 250 of spoold's
// listener (daemon/group_commit.h), so W7/W8 cannot go faster than this on the same disk.
// Usage: disk_ceiling DIR N SIZE WRITERS   (prints messages per second; DIR must be empty)
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <chrono>
#include <condition_variable>
#include <cstdio>
#include <cstdlib>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

namespace {

[[noreturn]] void die(const std::string& what) {
  std::perror(what.c_str());
  std::exit(1);
}

std::string name(const std::string& dir, int i) {
  return dir + "/m" + std::to_string(i);
}

}  // namespace

int main(int argc, char** argv) {
  if (argc != 5) {
    std::fprintf(stderr, "usage: disk_ceiling DIR N SIZE WRITERS\n");
    return 2;
  }
  const std::string dir = argv[1];
  const int n = std::atoi(argv[2]);
  const std::string data(static_cast<size_t>(std::atoi(argv[3])), 'x');
  const int writers = std::atoi(argv[4]);
  if (n <= 0 || writers <= 0) return 2;
  const std::string tmp = dir + "/tmp", inc = dir + "/incoming";
  if (mkdir(tmp.c_str(), 0700) != 0 || mkdir(inc.c_str(), 0700) != 0) die("mkdir");
  int dfd = open(inc.c_str(), O_RDONLY | O_DIRECTORY);
  if (dfd < 0) die("open incoming");

  std::mutex mu;
  std::condition_variable cv;
  std::vector<int> ready;
  auto t0 = std::chrono::steady_clock::now();
  std::vector<std::thread> threads;
  for (int k = 0; k < writers; ++k) {
    threads.emplace_back([&, k] {
      for (int i = k; i < n; i += writers) {
        int fd = open(name(tmp, i).c_str(), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
        if (fd < 0) die("create");
        if (write(fd, data.data(), data.size()) != static_cast<ssize_t>(data.size())) die("write");
        if (fdatasync(fd) != 0) die("fdatasync");
        close(fd);
        std::lock_guard<std::mutex> lock(mu);
        ready.push_back(i);
        cv.notify_one();
      }
    });
  }
  int done = 0;
  while (done < n) {
    std::vector<int> batch;
    {
      std::unique_lock<std::mutex> lock(mu);
      cv.wait(lock, [&] { return !ready.empty(); });
      batch.swap(ready);
    }
    for (int i : batch)
      if (rename(name(tmp, i).c_str(), name(inc, i).c_str()) != 0) die("rename");
    if (fsync(dfd) != 0) die("fsync incoming");
    done += static_cast<int>(batch.size());
  }
  double secs = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  for (auto& t : threads) t.join();
  close(dfd);
  std::printf("%.1f\n", n / secs);
  return 0;
}
