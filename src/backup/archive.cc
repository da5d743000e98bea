#include "backup/archive.h"

#include <time.h>
#include <zstd.h>

#include <boost/json.hpp>
#include <cstdio>
#include <sstream>
#include <stdexcept>

#include "crypto/crypto.h"

namespace silo::backup {
namespace {

namespace json = boost::json;

constexpr std::string_view kMagic = "SILOBAK1";
constexpr int kZstdLevel = 3;
constexpr size_t kTenantIdLength = 32;
constexpr char kMacLabel[] = "silo-backup-manifest-v1\n";

std::string ChunkAd(const std::string& id, int64_t index, bool last) {
  return "silo-backup-v1:" + id + ":" + std::to_string(index) + ":" + (last ? "last" : "more");
}

void PutU32(std::string& out, uint32_t v) {
  for (int shift = 24; shift >= 0; shift -= 8)
    out.push_back(static_cast<char>((v >> shift) & 0xff));
}

uint32_t GetU32(std::string_view in) {
  uint32_t v = 0;
  for (int i = 0; i < 4; ++i) v = (v << 8) | static_cast<unsigned char>(in[i]);
  return v;
}

bool IsHex(std::string_view s) {
  return s.find_first_not_of("0123456789abcdef") == std::string_view::npos;
}

json::object HeadJson(const ChainHead& h) {
  return {{"seq", h.seq}, {"hash", h.hash}, {"count", h.count}};
}

// The manifest's fields in a fixed order (the MAC covers this text).
json::object ManifestObject(const Manifest& m) {
  json::object o{{"format", m.format},
                 {"id", m.id},
                 {"tenant_id", m.tenant_id},
                 {"tenant_slug", m.tenant_slug},
                 {"taken_at_us", m.taken_at_us},
                 {"events", HeadJson(m.events)},
                 {"audit", HeadJson(m.audit)},
                 {"image_bytes", m.image_bytes},
                 {"stored_bytes", m.stored_bytes},
                 {"chunks", m.chunks},
                 {"compression", "zstd"},
                 {"cipher", "xchacha20poly1305-ietf"},
                 {"sha256", m.sha256},
                 {"key_id", m.key_id},
                 {"wrapped_key", m.wrapped_key}};
  if (m.format == 1) {
    o["master_fingerprint"] = m.master_fingerprint;
  } else {
    o["tenant_key_id"] = m.tenant_key_id;
  }
  if (!m.files_list_sha256.empty()) {
    o["files"] = json::object{
        {"count", m.files}, {"bytes", m.files_bytes}, {"list_sha256", m.files_list_sha256}};
  }
  return o;
}

std::string Mac(std::string_view body, const crypto::SecretKey& key) {
  return crypto::HexEncode(crypto::KeyedHash(key, std::string(kMacLabel) + std::string(body), 32));
}

}  // namespace

std::string NewBackupId(const std::string& tenant_id, int64_t taken_at_us) {
  time_t secs = static_cast<time_t>(taken_at_us / 1'000'000);
  struct tm tm {};
  gmtime_r(&secs, &tm);
  char when[64];
  std::snprintf(when, sizeof when, "%04d%02d%02dT%02d%02d%02dZ", tm.tm_year + 1900, tm.tm_mon + 1,
                tm.tm_mday, tm.tm_hour, tm.tm_min, tm.tm_sec);
  return tenant_id + "-" + when + "-" + crypto::HexEncode(crypto::RandomBytes(2));
}

Result<std::string> TenantOfBackupId(std::string_view id) {
  // <32 hex>-<8 digits>T<6 digits>Z-<4 hex>
  constexpr size_t kLength = kTenantIdLength + 1 + 16 + 1 + 4;
  if (id.size() != kLength || id[kTenantIdLength] != '-' || id[kTenantIdLength + 17] != '-' ||
      !IsHex(id.substr(0, kTenantIdLength)) || !IsHex(id.substr(kLength - 4))) {
    return InvalidArgument("not a backup id");
  }
  std::string_view when = id.substr(kTenantIdLength + 1, 16);
  for (size_t i = 0; i < when.size(); ++i) {
    char c = when[i];
    bool ok = i == 8 ? c == 'T' : i == 15 ? c == 'Z' : (c >= '0' && c <= '9');
    if (!ok) return InvalidArgument("not a backup id");
  }
  return std::string(id.substr(0, kTenantIdLength));
}

std::string ManifestName(const std::string& id) {
  return id.substr(0, kTenantIdLength) + "/" + id + ".json";
}
std::string DataName(const std::string& id) {
  return id.substr(0, kTenantIdLength) + "/" + id + ".data";
}

std::string BackupKeyId(const crypto::SecretKey& backup_key) {
  return crypto::HexEncode(crypto::KeyedHash(backup_key, "silo-backup-key-id", 8));
}

ImageSealer::ImageSealer(const crypto::SecretKey& backup_key, Manifest& m,
                         std::function<Status(std::string_view)> out)
    : key_(backup_key), m_(m), out_(std::move(out)) {}

ImageSealer::~ImageSealer() { crypto::WipeString(pending_); }

Status ImageSealer::Emit(std::string_view bytes) {
  digest_.Update(bytes);
  stored_bytes_ += static_cast<int64_t>(bytes.size());
  return out_(bytes);
}

Status ImageSealer::SealChunk(std::string_view plain, bool last) {
  if (index_ == 0) SILO_RETURN_IF_ERROR(Emit(kMagic));
  std::string compressed(ZSTD_compressBound(plain.size()), '\0');
  size_t c =
      ZSTD_compress(compressed.data(), compressed.size(), plain.data(), plain.size(), kZstdLevel);
  // Compressing into a buffer of ZSTD_compressBound cannot fail.
  std::string sealed =
      crypto::Seal(key_, std::string_view(compressed.data(), c), ChunkAd(m_.id, index_, last));
  crypto::WipeString(compressed);
  std::string length;
  PutU32(length, static_cast<uint32_t>(sealed.size()));
  SILO_RETURN_IF_ERROR(Emit(length));
  SILO_RETURN_IF_ERROR(Emit(sealed));
  image_bytes_ += static_cast<int64_t>(plain.size());
  ++index_;
  return Status::Ok();
}

Status ImageSealer::Add(std::string_view image_bytes) {
  pending_.append(image_bytes);
  // A full chunk is sealed once more bytes follow it: only then is it known
  // not to be the last.
  size_t done = 0;
  while (pending_.size() - done > kChunkBytes) {
    SILO_RETURN_IF_ERROR(SealChunk(std::string_view(pending_).substr(done, kChunkBytes), false));
    done += kChunkBytes;
  }
  if (done > 0) {
    std::string tail = pending_.substr(done);
    crypto::WipeString(pending_);
    pending_.swap(tail);
  }
  return Status::Ok();
}

Status ImageSealer::Finish() {
  SILO_RETURN_IF_ERROR(SealChunk(pending_, true));
  crypto::WipeString(pending_);
  pending_.clear();
  m_.image_bytes = image_bytes_;
  m_.stored_bytes = stored_bytes_;
  m_.chunks = index_;
  m_.sha256 = digest_.FinishHex();
  m_.key_id = BackupKeyId(key_);
  return Status::Ok();
}

Status CheckData(int64_t size, std::string_view sha256, const Manifest& m) {
  if (size < m.stored_bytes) {
    return DataLoss("backup data truncated: " + std::to_string(size) + " of " +
                    std::to_string(m.stored_bytes) + " bytes");
  }
  if (size != m.stored_bytes || !crypto::ConstantTimeEquals(sha256, m.sha256)) {
    return DataLoss("backup data altered: its SHA-256 differs from the manifest's");
  }
  return Status::Ok();
}

Status OpenImageChunks(const std::function<Status(size_t n, std::string& out)>& read,
                       const crypto::SecretKey& backup_key, const Manifest& m,
                       const std::function<Status(std::string_view)>& sink) {
  if (m.image_bytes <= 0 || m.image_bytes > (int64_t{1} << 42)) {
    return DataLoss("backup manifest has an impossible size");
  }
  std::string buf;
  if (!read(kMagic.size(), buf).ok() || buf != kMagic) return DataLoss("not a Silo backup object");
  int64_t remaining_stored = m.stored_bytes - static_cast<int64_t>(kMagic.size());
  int64_t produced = 0;
  int64_t index = 0;
  std::string image;
  struct Wipe {
    std::string& s;
    ~Wipe() { crypto::WipeString(s); }
  } wipe{image};
  for (bool last = false; !last; ++index) {
    auto truncated = [&] {
      return DataLoss("backup data truncated in chunk " + std::to_string(index));
    };
    if (remaining_stored < 4 || !read(4, buf).ok()) return truncated();
    uint32_t len = GetU32(buf);
    remaining_stored -= 4;
    if (static_cast<int64_t>(len) > remaining_stored || !read(len, buf).ok()) return truncated();
    remaining_stored -= len;
    const size_t left = static_cast<size_t>(m.image_bytes - produced);
    const size_t expect = std::min(kChunkBytes, left);
    last = expect == left;
    auto opened = crypto::Open(backup_key, buf, ChunkAd(m.id, index, last));
    if (!opened.ok()) {
      return DataLoss("backup chunk " + std::to_string(index) +
                      " failed authentication (wrong key, other backup, or altered)");
    }
    image.resize(expect);
    size_t got = ZSTD_decompress(image.data(), expect, opened->data(), opened->size());
    crypto::WipeString(*opened);
    if (ZSTD_isError(got) || got != expect) {
      return DataLoss("backup chunk " + std::to_string(index) + " does not decompress to its size");
    }
    SILO_RETURN_IF_ERROR(sink(image));
    produced += static_cast<int64_t>(expect);
  }
  if (remaining_stored != 0 || index != m.chunks) return DataLoss("backup data has trailing bytes");
  return Status::Ok();
}

std::string SealImage(std::string_view image, const crypto::SecretKey& backup_key, Manifest& m) {
  std::string out;
  ImageSealer sealer(backup_key, m, [&](std::string_view b) {
    out += b;
    return Status::Ok();
  });
  (void)sealer.Add(image);  // the sink cannot fail
  (void)sealer.Finish();
  return out;
}

Result<std::string> OpenImage(std::string_view data, const crypto::SecretKey& backup_key,
                              const Manifest& m) {
  SILO_RETURN_IF_ERROR(CheckData(static_cast<int64_t>(data.size()), crypto::Sha256Hex(data), m));
  size_t pos = 0;
  std::string image;
  Status s = OpenImageChunks(
      [&](size_t n, std::string& out) -> Status {
        if (data.size() - pos < n) return DataLoss("short");
        out.assign(data.substr(pos, n));
        pos += n;
        return Status::Ok();
      },
      backup_key, m,
      [&](std::string_view piece) {
        image += piece;
        return Status::Ok();
      });
  if (!s.ok()) {
    crypto::WipeString(image);
    return s;
  }
  return image;
}

std::string FilesListName(const std::string& id) {
  auto tenant = TenantOfBackupId(id);
  return (tenant.ok() ? *tenant : std::string("invalid")) + "/" + id + ".files";
}

std::string CheckpointName(const std::string& id) {
  auto tenant = TenantOfBackupId(id);
  return (tenant.ok() ? *tenant : std::string("invalid")) + "/" + id + ".checkpoint";
}

std::string FileBlobName(const std::string& tenant_id, const std::string& blob_id,
                         uint32_t key_epoch) {
  return tenant_id + "/files/" + blob_id +
         (key_epoch == 0 ? std::string() : ".k" + std::to_string(key_epoch)) + ".sf";
}

namespace {

std::string FilesListAd(const std::string& id) { return "silo-backup-files-v1:" + id; }

}  // namespace

std::string SealFilesList(const std::vector<FileEntry>& entries,
                          const crypto::SecretKey& backup_key, Manifest& m) {
  std::string text;
  m.files = 0;
  m.files_bytes = 0;
  for (const auto& e : entries) {
    text += e.blob_id + " " + std::to_string(e.sealed_bytes) + " " + e.sha256;
    if (e.key_epoch != 0) text += " " + std::to_string(e.key_epoch);
    text += "\n";
    ++m.files;
    m.files_bytes += e.sealed_bytes;
  }
  std::string sealed = crypto::Seal(backup_key, text, FilesListAd(m.id));
  m.files_list_sha256 = crypto::Sha256Hex(sealed);
  return sealed;
}

Result<std::vector<FileEntry>> OpenFilesList(std::string_view sealed,
                                             const crypto::SecretKey& backup_key,
                                             const Manifest& m) {
  if (!crypto::ConstantTimeEquals(crypto::Sha256Hex(sealed), m.files_list_sha256)) {
    return DataLoss("the backup's files list was altered");
  }
  auto text = crypto::Open(backup_key, sealed, FilesListAd(m.id));
  if (!text.ok()) return DataLoss("the backup's files list failed authentication");
  std::vector<FileEntry> out;
  int64_t bytes = 0;
  std::istringstream in(*text);
  std::string line;
  while (std::getline(in, line)) {
    std::istringstream fields(line);
    FileEntry e;
    if (!(fields >> e.blob_id >> e.sealed_bytes >> e.sha256) || e.blob_id.size() != 32 ||
        e.sha256.size() != 64 || e.sealed_bytes < 0) {
      return DataLoss("the backup's files list is malformed");
    }
    // A blob re-sealed by a re-key carries its key epoch (absent: 0).
    if (int64_t epoch = 0; fields >> epoch) {
      if (epoch <= 0 || epoch > 0xffffffffLL)
        return DataLoss("the backup's files list is malformed");
      e.key_epoch = static_cast<uint32_t>(epoch);
    }
    bytes += e.sealed_bytes;
    out.push_back(std::move(e));
  }
  if (static_cast<int64_t>(out.size()) != m.files || bytes != m.files_bytes) {
    return DataLoss("the backup's files list does not match its manifest");
  }
  return out;
}

std::string SerializeManifest(const Manifest& m, const crypto::SecretKey& backup_key) {
  json::object o = ManifestObject(m);
  std::string body = json::serialize(o);
  o["mac"] = Mac(body, backup_key);
  return json::serialize(o) + "\n";
}

Result<Manifest> ParseManifest(std::string_view text) {
  boost::system::error_code ec;
  json::value v = json::parse(text, ec);
  if (ec || !v.is_object()) return DataLoss("backup manifest is not JSON");
  const json::object& o = v.as_object();
  Manifest m;
  try {
    m.format = static_cast<int>(o.at("format").as_int64());
    if (m.format != 1 && m.format != kFormatVersion) {
      return DataLoss("backup format " + std::to_string(m.format) + " is not supported");
    }
    m.id = o.at("id").as_string();
    m.tenant_id = o.at("tenant_id").as_string();
    m.tenant_slug = o.at("tenant_slug").as_string();
    m.taken_at_us = o.at("taken_at_us").as_int64();
    for (auto [key, head] : {std::pair{"events", &m.events}, std::pair{"audit", &m.audit}}) {
      const json::object& h = o.at(key).as_object();
      head->seq = h.at("seq").as_int64();
      head->hash = h.at("hash").as_string();
      head->count = h.at("count").as_int64();
    }
    m.image_bytes = o.at("image_bytes").as_int64();
    m.stored_bytes = o.at("stored_bytes").as_int64();
    m.chunks = o.at("chunks").as_int64();
    m.sha256 = o.at("sha256").as_string();
    m.key_id = o.at("key_id").as_string();
    m.wrapped_key = o.at("wrapped_key").as_string();
    if (m.format == 1) {
      m.master_fingerprint = o.at("master_fingerprint").as_string();
    } else {
      m.tenant_key_id = o.at("tenant_key_id").as_string();
    }
    if (const json::value* f = o.if_contains("files")) {
      const json::object& fo = f->as_object();
      m.files = fo.at("count").as_int64();
      m.files_bytes = fo.at("bytes").as_int64();
      m.files_list_sha256 = fo.at("list_sha256").as_string();
      if (m.files_list_sha256.size() != 64) throw std::invalid_argument("list_sha256");
    }
    (void)o.at("mac").as_string();
  } catch (const std::exception&) {
    return DataLoss("backup manifest lacks a field or has one of the wrong type");
  }
  auto tenant = TenantOfBackupId(m.id);
  if (!tenant.ok() || *tenant != m.tenant_id) {
    return DataLoss("backup manifest names a backup id that is not its tenant's");
  }
  return m;
}

Status CheckManifestMac(std::string_view text, const crypto::SecretKey& backup_key) {
  boost::system::error_code ec;
  json::value v = json::parse(text, ec);
  if (ec || !v.is_object()) return DataLoss("backup manifest is not JSON");
  json::object o = v.as_object();
  auto* mac = o.if_contains("mac");
  if (mac == nullptr || !mac->is_string()) return DataLoss("backup manifest has no MAC");
  std::string given(mac->as_string());
  o.erase("mac");
  // Recompute over the fields in the order the writer used.
  auto parsed = ParseManifest(text);
  if (!parsed.ok()) return parsed.status();
  std::string body = json::serialize(ManifestObject(*parsed));
  if (json::serialize(o) != body || !crypto::ConstantTimeEquals(Mac(body, backup_key), given)) {
    return DataLoss("backup manifest failed authentication (altered, or another key)");
  }
  return Status::Ok();
}

}  // namespace silo::backup
