#include "storage/cipher_vfs.h"

#include <sodium.h>
#include <sqlite3.h>
#include <strings.h>

#include <array>
#include <atomic>
#include <cstddef>
#include <cstring>
#include <map>
#include <mutex>
#include <string_view>

#include "base/log.h"
#include "crypto/crypto.h"
#include "crypto/sodium_init.h"
#include "storage/cipher_vfs_internal.h"
#include "storage/page_cipher.h"
#include "storage/vfs_shim.h"

namespace silo::storage {
namespace cipher {
namespace {

std::atomic<uint64_t> g_auth_failures{0};

std::mutex g_registry_mu;
std::map<std::string, std::shared_ptr<const CipherKeys>>& Registry() {
  static auto* registry = new std::map<std::string, std::shared_ptr<const CipherKeys>>();
  return *registry;
}

std::shared_ptr<const CipherKeys> LookupKey(const char* id) {
  if (id == nullptr) return nullptr;
  std::lock_guard lock(g_registry_mu);
  auto it = Registry().find(id);
  return it == Registry().end() ? nullptr : it->second;
}

crypto::SecretKey DeriveKey(const crypto::SecretKey& key, std::string_view label) {
  std::string bytes = crypto::KeyedHash(key, label, crypto::SecretKey::kSize);
  auto derived = crypto::SecretKey::FromBytes(bytes);
  crypto::WipeString(bytes);
  return std::move(derived).value();
}

struct VfsInfo {
  sqlite3_vfs vfs;
  std::string name;  // vfs.zName points here
};

constexpr int kSiloFileSize = shim::AlignedSize(sizeof(SiloFile));
static_assert(offsetof(SiloFile, lower) == offsetof(shim::ShimFile, lower));

}  // namespace

void ReportAuthFailure(SiloFile* f, const char* what, int64_t offset) {
  g_auth_failures.fetch_add(1, std::memory_order_relaxed);
  sqlite3_log(SQLITE_IOERR_AUTH, "silo: %s failed authentication in %s at offset %lld", what,
              f->name ? f->name : "?", static_cast<long long>(offset));
  log::Warn(
      "page failed authentication",
      {{"file", f->name ? f->name : "?"}, {"kind", what}, {"offset", std::to_string(offset)}});
}

int LowerRead(SiloFile* f, void* buf, int amount, int64_t offset) {
  return f->lower->pMethods->xRead(f->lower, buf, amount, offset);
}
int LowerWrite(SiloFile* f, const void* buf, int amount, int64_t offset) {
  return f->lower->pMethods->xWrite(f->lower, buf, amount, offset);
}

namespace {

// ---- Main database: whole pages at page-aligned offsets. -------------------

int DbOpenPage(SiloFile* f, int64_t index, const uint8_t* in, uint8_t* out) {
  uint32_t pgno = static_cast<uint32_t>(index + 1);
  Ad ad('D');
  ad.U32(pgno);
  PageOpenError err = OpenPage(Keys(f).page, Keys(f).fingerprint, pgno == 1, ad.view(), in, out);
  switch (err) {
    case PageOpenError::kOk: return SQLITE_OK;
    case PageOpenError::kNotSilo:
    case PageOpenError::kWrongKey:
    case PageOpenError::kBadVersion:
      if (pgno == 1) {
        sqlite3_log(SQLITE_NOTADB, "silo: %s: wrong key or not a silo database", f->name);
        return SQLITE_NOTADB;
      }
      [[fallthrough]];
    case PageOpenError::kAuthFailed: break;
  }
  ReportAuthFailure(f, "database page", index * kP);
  return SQLITE_IOERR_AUTH;
}

int DbRead(SiloFile* f, void* out, int amount, int64_t offset) {
  auto* dst = static_cast<uint8_t*>(out);
  int64_t first = offset / kP;
  int64_t last = (offset + amount - 1) / kP;
  for (int64_t index = first; index <= last; ++index) {
    int rc = LowerRead(f, f->disk, kPageSize, index * kP);
    if (rc == SQLITE_IOERR_SHORT_READ) {
      // Past the end (new or empty file): zeros, never decrypted.
      std::memset(out, 0, amount);
      return rc;
    }
    if (rc != SQLITE_OK) return rc;
    int64_t page_start = index * kP;
    int64_t from = std::max(offset, page_start);
    int64_t to = std::min(offset + amount, page_start + kP);
    bool whole = from == page_start && to == page_start + kP;
    uint8_t* target = whole ? dst + (from - offset) : f->plain;
    rc = DbOpenPage(f, index, f->disk, target);
    if (rc != SQLITE_OK) {
      std::memset(out, 0, amount);
      return rc;
    }
    if (!whole) std::memcpy(dst + (from - offset), f->plain + (from - page_start), to - from);
  }
  return SQLITE_OK;
}

int DbWrite(SiloFile* f, const void* in, int amount, int64_t offset) {
  if (offset % kP != 0 || amount % kP != 0 || amount == 0) {
    sqlite3_log(SQLITE_IOERR_WRITE, "silo: refused a %d-byte database write at %lld", amount,
                static_cast<long long>(offset));
    return SQLITE_IOERR_WRITE;
  }
  const auto* src = static_cast<const uint8_t*>(in);
  for (int64_t done = 0; done < amount; done += kP) {
    uint32_t pgno = static_cast<uint32_t>((offset + done) / kP + 1);
    Ad ad('D');
    ad.U32(pgno);
    Status s =
        SealPage(Keys(f).page, Keys(f).fingerprint, pgno == 1, ad.view(), src + done, f->disk);
    if (!s.ok()) {
      sqlite3_log(SQLITE_IOERR_WRITE, "silo: refused page %u: %s", pgno, s.message().c_str());
      return SQLITE_IOERR_WRITE;
    }
    int rc = LowerWrite(f, f->disk, kPageSize, offset + done);
    if (rc != SQLITE_OK) return rc;
  }
  return SQLITE_OK;
}

// ---- io_methods -------------------------------------------------------------

SiloFile* AsSilo(sqlite3_file* file) { return reinterpret_cast<SiloFile*>(file); }

int XClose(sqlite3_file* file) {
  SiloFile* f = AsSilo(file);
  int rc = SQLITE_OK;
  if (f->lower->pMethods != nullptr) rc = f->lower->pMethods->xClose(f->lower);
  delete f->keys;
  f->keys = nullptr;
  return rc;
}

int XRead(sqlite3_file* file, void* buf, int amount, sqlite3_int64 offset) {
  SiloFile* f = AsSilo(file);
  switch (f->kind) {
    case FileKind::kMainDb: return DbRead(f, buf, amount, offset);
    case FileKind::kWal: return WalRead(f, buf, amount, offset);
    case FileKind::kJournal: return JournalRead(f, buf, amount, offset);
    case FileKind::kPassThrough: break;
  }
  return LowerRead(f, buf, amount, offset);
}

int XWrite(sqlite3_file* file, const void* buf, int amount, sqlite3_int64 offset) {
  SiloFile* f = AsSilo(file);
  switch (f->kind) {
    case FileKind::kMainDb: return DbWrite(f, buf, amount, offset);
    case FileKind::kWal: return WalWrite(f, buf, amount, offset);
    case FileKind::kJournal: return JournalWrite(f, buf, amount, offset);
    case FileKind::kPassThrough: break;
  }
  return LowerWrite(f, buf, amount, offset);
}

int XTruncate(sqlite3_file* file, sqlite3_int64 size) {
  SiloFile* f = AsSilo(file);
  f->pending = PendingHeader{};
  f->last = LastOp{};
  return f->lower->pMethods->xTruncate(f->lower, size);
}
int XDeviceCharacteristics(sqlite3_file* file) {
  int caps = AsSilo(file)->lower->pMethods->xDeviceCharacteristics(AsSilo(file)->lower);
  // Power-safe overwrite: no WAL padding frames and no page writes split at
  // sector boundaries. No atomic-write claims: a sealed page is written whole
  // but SQLite must not rely on batches.
  caps |= SQLITE_IOCAP_POWERSAFE_OVERWRITE;
  caps &= ~(SQLITE_IOCAP_BATCH_ATOMIC | SQLITE_IOCAP_ATOMIC | SQLITE_IOCAP_ATOMIC512 |
            SQLITE_IOCAP_ATOMIC1K | SQLITE_IOCAP_ATOMIC2K | SQLITE_IOCAP_ATOMIC4K |
            SQLITE_IOCAP_ATOMIC8K | SQLITE_IOCAP_ATOMIC16K | SQLITE_IOCAP_ATOMIC32K |
            SQLITE_IOCAP_ATOMIC64K);
  return caps;
}

// Returns a refusal message for a PRAGMA the format cannot allow, or nullptr.
const char* VetoPragma(const char* name, const char* value) {
  if (name == nullptr || value == nullptr) return nullptr;  // queries are fine
  if (strcasecmp(name, "page_size") == 0 && std::strtol(value, nullptr, 10) != kP) {
    return "silo: the page size is fixed at 4096";
  }
  if (strcasecmp(name, "journal_mode") == 0 && strcasecmp(value, "wal") != 0) {
    return "silo: databases stay in WAL mode";
  }
  if (strcasecmp(name, "temp_store") == 0 && strcasecmp(value, "memory") != 0 &&
      std::strcmp(value, "2") != 0) {
    return "silo: temporary storage stays in memory (no plaintext temp files)";
  }
  if (strcasecmp(name, "mmap_size") == 0 && std::strtoll(value, nullptr, 10) != 0) {
    return "silo: memory-mapped I/O is off (it would bypass decryption)";
  }
  return nullptr;
}

int XFileControl(sqlite3_file* file, int op, void* arg) {
  SiloFile* f = AsSilo(file);
  if (op == SQLITE_FCNTL_PRAGMA && f->kind == FileKind::kMainDb) {
    char** az = static_cast<char**>(arg);
    if (const char* veto = VetoPragma(az[1], az[2])) {
      az[0] = sqlite3_mprintf("%s", veto);
      return SQLITE_ERROR;
    }
  }
  int rc = f->lower->pMethods->xFileControl(f->lower, op, arg);
  if (op == SQLITE_FCNTL_VFSNAME && rc == SQLITE_OK) {
    char** name = static_cast<char**>(arg);
    char* wrapped = sqlite3_mprintf("silo/%z", *name);
    *name = wrapped;
  }
  return rc;
}

// iVersion 2 (from the shim plumbing): no xFetch, so the pager never
// memory-maps ciphertext.
const sqlite3_io_methods* Methods() {
  static const sqlite3_io_methods methods = [] {
    sqlite3_io_methods m = shim::PassThroughMethods();
    m.xClose = XClose;
    m.xRead = XRead;
    m.xWrite = XWrite;
    m.xTruncate = XTruncate;
    m.xFileControl = XFileControl;
    m.xDeviceCharacteristics = XDeviceCharacteristics;
    return m;
  }();
  return &methods;
}

// ---- the VFS ----------------------------------------------------------------

int XOpen(sqlite3_vfs* vfs, const char* name, sqlite3_file* file, int flags, int* out_flags) {
  auto* lower = static_cast<sqlite3_vfs*>(vfs->pAppData);
  SiloFile* f = AsSilo(file);
  std::memset(static_cast<void*>(f), 0, sizeof(SiloFile));
  f->lower = reinterpret_cast<sqlite3_file*>(reinterpret_cast<char*>(file) + kSiloFileSize);
  f->name = name;
  f->pending = PendingHeader{};
  constexpr int kTemporary = SQLITE_OPEN_TEMP_DB | SQLITE_OPEN_TEMP_JOURNAL |
                             SQLITE_OPEN_TRANSIENT_DB | SQLITE_OPEN_SUBJOURNAL;
  std::shared_ptr<const CipherKeys> keys;
  if (name == nullptr || (flags & kTemporary) != 0) {
    // Temp files would hold plaintext: the connection keeps them in memory.
    sqlite3_log(SQLITE_CANTOPEN, "silo: refused a temporary file (flags 0x%x)", flags);
    return SQLITE_CANTOPEN;
  } else if (flags & SQLITE_OPEN_MAIN_DB) {
    f->kind = FileKind::kMainDb;
    keys = LookupKey(sqlite3_uri_parameter(name, "silo_key"));
  } else if (flags & (SQLITE_OPEN_WAL | SQLITE_OPEN_MAIN_JOURNAL)) {
    f->kind = (flags & SQLITE_OPEN_WAL) ? FileKind::kWal : FileKind::kJournal;
    sqlite3_file* main = sqlite3_database_file_object(name);
    if (main != nullptr && main->pMethods == Methods() && AsSilo(main)->keys != nullptr) {
      keys = *AsSilo(main)->keys;
    }
  } else if (flags & SQLITE_OPEN_SUPER_JOURNAL) {
    f->kind = FileKind::kPassThrough;  // holds file names only
  } else {
    return SQLITE_CANTOPEN;
  }
  if (f->kind != FileKind::kPassThrough && keys == nullptr) {
    sqlite3_log(SQLITE_CANTOPEN, "silo: no key registered for %s", name);
    return SQLITE_CANTOPEN;
  }
  int rc = lower->xOpen(lower, name, f->lower, flags, out_flags);
  if (rc != SQLITE_OK) return rc;
  if (keys != nullptr) f->keys = new std::shared_ptr<const CipherKeys>(std::move(keys));
  f->base.pMethods = Methods();
  return SQLITE_OK;
}

std::mutex g_vfs_mu;

}  // namespace
}  // namespace cipher

using cipher::CipherKeys;
using cipher::DeriveKey;
using cipher::g_auth_failures;
using cipher::g_registry_mu;
using cipher::g_vfs_mu;
using cipher::kSiloFileSize;
using cipher::Registry;
using cipher::VfsInfo;
using cipher::XOpen;

Status RegisterCipherVfs(const std::string& name, const std::string& lower_name) {
  crypto::EnsureSodium();
  std::lock_guard lock(g_vfs_mu);
  if (sqlite3_vfs_find(name.c_str()) != nullptr) return Status::Ok();
  sqlite3_vfs* lower = sqlite3_vfs_find(lower_name.c_str());
  if (lower == nullptr) return NotFound("no SQLite VFS named " + lower_name);
  if (lower->iVersion < 2) return InvalidArgument("lower VFS too old: " + lower_name);
  auto* info = new VfsInfo{};  // registered for the life of the process
  info->name = name;
  sqlite3_vfs& v = info->vfs;
  shim::PassThroughVfs(&v, lower);
  v.szOsFile = kSiloFileSize + lower->szOsFile;
  v.zName = info->name.c_str();
  v.xOpen = XOpen;
  int rc = sqlite3_vfs_register(&v, 0);
  if (rc != SQLITE_OK) return Internal("sqlite3_vfs_register failed");
  return Status::Ok();
}

void EnsureCipherVfs() {
  static std::once_flag once;
  std::call_once(once, [] {
    Status s = RegisterCipherVfs(kCipherVfsName, "unix-excl");
    if (!s.ok()) {
      log::Error("cannot register the cipher VFS", {{"error", s.message()}});
      std::abort();  // no encryption means no storage at all
    }
  });
}

KeyRegistration::~KeyRegistration() {
  std::lock_guard lock(g_registry_mu);
  Registry().erase(id_);
}

std::unique_ptr<KeyRegistration> RegisterKey(const crypto::SecretKey& database_key) {
  crypto::EnsureSodium();
  auto keys = std::make_shared<CipherKeys>(CipherKeys{
      DeriveKey(database_key, "silo page cipher key v1"),
      DeriveKey(database_key, "silo checksum mask key v1"),
      PageKeyFingerprint(database_key),
  });
  std::string id = crypto::HexEncode(crypto::RandomBytes(16));
  {
    std::lock_guard lock(g_registry_mu);
    Registry()[id] = std::move(keys);
  }
  return std::unique_ptr<KeyRegistration>(new KeyRegistration(id));
}

PageCodec::PageCodec(const crypto::SecretKey& database_key)
    : page_(DeriveKey(database_key, "silo page cipher key v1")),
      fingerprint_(PageKeyFingerprint(database_key)) {}

PageCodec::~PageCodec() = default;

// The associated data of main-database page `pgno`: what DbWrite and
// DbOpenPage build.
Status PageCodec::Seal(uint32_t pgno, const uint8_t* in, uint8_t* out) const {
  cipher::Ad ad('D');
  ad.U32(pgno);
  return SealPage(page_, fingerprint_, pgno == 1, ad.view(), in, out);
}

Status PageCodec::Open(uint32_t pgno, const uint8_t* in, uint8_t* out) const {
  cipher::Ad ad('D');
  ad.U32(pgno);
  if (OpenPage(page_, fingerprint_, pgno == 1, ad.view(), in, out) != PageOpenError::kOk) {
    return DataLoss("database page " + std::to_string(pgno) + " failed authentication");
  }
  return Status::Ok();
}

std::string CipherUri(const std::string& path, const KeyRegistration& key, const std::string& vfs) {
  std::string uri = "file:";
  static constexpr char kHex[] = "0123456789ABCDEF";
  for (unsigned char c : path) {
    if (c == '%' || c == '?' || c == '#' || c == '&' || c == '=' || c < 0x20 || c >= 0x7f) {
      uri.push_back('%');
      uri.push_back(kHex[c >> 4]);
      uri.push_back(kHex[c & 15]);
    } else {
      uri.push_back(static_cast<char>(c));
    }
  }
  return uri + "?vfs=" + vfs + "&silo_key=" + key.id();
}

uint64_t AuthFailureCount() { return g_auth_failures.load(std::memory_order_relaxed); }

}  // namespace silo::storage
