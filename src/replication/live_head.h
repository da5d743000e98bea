// Where a led tenant's own files stand on its chain, kept beside its
// database (`chain.live`) while this process records its changes, so that a
// node whose process died (SIGKILL, a crash; not the machine) can tell on
// its next start whether its files are exactly a position of the chain.
// Then they go on from there as the chain.head a clean stop leaves does
// (app/cluster_member.h): as the tenant's primary, or as a copy of the
// primary that took it over, with no snapshot.
//
// The record is rewritten in place with one pwrite and no fsync: "clean" at
// a position after each cut (SegmentRecorder), "dirty" before the first
// change after it. Without an fsync it is only as durable as the kernel's
// page cache, and so are the process's unsynced writes to the files: a
// record is trusted only by a process of the same boot (the kernel's boot
// id), whose page cache still holds every write the dead process made, and
// only while both files are as they were at the cut (device, inode, size,
// modification time). Anything else (dirty, torn, another boot, a file
// changed or gone since) reads as nothing: a snapshot, as before.
//
// Format (docs/formats.md "chain.live"): kRecordSize bytes, little-endian,
// BLAKE2b-256 over the rest at the end.
#ifndef SILO_REPLICATION_LIVE_HEAD_H_
#define SILO_REPLICATION_LIVE_HEAD_H_

#include <cstdint>
#include <memory>
#include <optional>
#include <string>

#include "base/status.h"
#include "replication/segment.h"

namespace silo::replication {

class LiveHead {
 public:
  static constexpr size_t kRecordSize = 256;

  // Opens (creates, 0600) the record beside `database` and marks it dirty:
  // until the first cut nothing is known of the files.
  static Result<std::unique_ptr<LiveHead>> Open(const std::string& database);
  ~LiveHead();
  LiveHead(const LiveHead&) = delete;
  LiveHead& operator=(const LiveHead&) = delete;

  // Before a change reaches the files. Writes only after a MarkClean. A
  // record that cannot be marked dirty is removed (and nothing is written
  // to it again), never left clean.
  void MarkDirty();
  // The files are `at` now: after a cut, with every change before it on
  // the files.
  void MarkClean(const ReplicaPosition& at);

  // The position recorded clean beside `database` by a process of this
  // boot, with the database and its WAL unchanged since; nullopt otherwise.
  static std::optional<ReplicaPosition> Read(const std::string& database);
  static std::string FileOf(const std::string& database);

 private:
  LiveHead(std::string database, int fd) : database_(std::move(database)), fd_(fd) {}
  void Disable();

  std::string database_;
  int fd_;
  bool dirty_ = false;
  std::string dirty_record_;  // made at each MarkClean: the next MarkDirty only writes it
};

}  // namespace silo::replication

#endif  // SILO_REPLICATION_LIVE_HEAD_H_
