// A fault-injecting VFS for tests, placed *below* the cipher VFS, so it sees
// exactly the bytes that reach the disk.
//
//  - Recording: every write is scanned for registered needles (plaintext
//    markers); counts of writes per file kind show which paths were taken.
//  - Power loss: it remembers, per file, what each write or truncate since
//    that file's last sync replaced. CutPowerAfterWrites(n) makes write n+1
//    and everything after it fail (as if the machine stopped); then, with all
//    connections closed, RestorePower() puts every file back to its
//    last-synced contents, which is what a disk without its cache holds.
//
// Registered once as "fault-lower" over unix-excl, with the cipher VFS
// "silo-fault" over it. Test-only; not thread-safe against concurrent
// configuration changes.
#ifndef SILO_STORAGE_FAULT_VFS_H_
#define SILO_STORAGE_FAULT_VFS_H_

#include <cstdint>
#include <string>
#include <vector>

namespace silo::storage::testing {

inline constexpr char kFaultCipherVfs[] = "silo-fault";

struct FaultStats {
  int64_t db_writes = 0;
  int64_t wal_writes = 0;
  int64_t journal_writes = 0;
  int64_t syncs = 0;
  int64_t needle_hits = 0;  // writes that contained a needle
  std::vector<std::string> needle_files;
};

class FaultVfs {
 public:
  // Registers both VFSes on first use.
  static FaultVfs& Get();

  void Reset();  // clears stats, needles and undo logs; power on
  void AddNeedle(const std::string& needle);
  FaultStats stats() const;

  // Power is cut after `n` more successful writes (counted over all files).
  void CutPowerAfterWrites(int64_t n);
  bool power_cut() const;
  // REQUIRES: no open file. Rolls every file back to its last-synced state
  // and switches power back on.
  void RestorePower();
};

}  // namespace silo::storage::testing

#endif  // SILO_STORAGE_FAULT_VFS_H_
