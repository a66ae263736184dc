// flights-to-csv.mjs - convert vega-datasets' flights-3m.parquet into a
// landing area with one CSV per day:
//   OUT/actuals/YYYY-MM-DD.csv   flight_id,dep_time,origin,destination,distance,delay
//   OUT/schedule/YYYY-MM-DD.csv  flight_id,dep_time,origin,destination,distance
//
// Usage: node flights-to-csv.mjs FLIGHTS.parquet OUTDIR EXPECTED_ROWS
//
// The parquet `date` column is a TIMESTAMP(MICROS) with isAdjustedToUTC=false,
// i.e. local wall-clock departure time; we format its UTC fields so no time
// zone shifts a flight to another day. dep_time is written "YYYY-MM-DD HH:MM".
//
// flight_id = YYYYMMDD-NNNNN where NNNNN is the row's index within its day in
// source order. It is stable (same package version, same ids) and unique.
//
// Rows are read one row group at a time, so memory stays near the size of the
// CSV text (~200 MB), not of 3M JS objects. Days are written at the end into
// OUTDIR, which the caller creates fresh and renames into place.
import fs from 'node:fs'
import path from 'node:path'
import { parquetMetadataAsync, parquetReadObjects, asyncBufferFromFile } from 'hyparquet'
import { compressors } from 'hyparquet-compressors'

const [src, out, expectedArg] = process.argv.slice(2)
if (!src || !out || !expectedArg) {
  console.error('usage: node flights-to-csv.mjs FLIGHTS.parquet OUTDIR EXPECTED_ROWS')
  process.exit(2)
}
const expected = Number(expectedArg)

const file = await asyncBufferFromFile(src)
const md = await parquetMetadataAsync(file)
const want = ['date', 'delay', 'distance', 'origin', 'destination']
const have = md.schema.slice(1).map((s) => s.name)
if (JSON.stringify(have) !== JSON.stringify(want)) {
  console.error(`flights-to-csv: ${src}: unexpected columns ${have.join(',')} (want ${want.join(',')})`)
  process.exit(1)
}
if (Number(md.num_rows) !== expected) {
  console.error(`flights-to-csv: ${src}: ${md.num_rows} rows, expected ${expected}`)
  process.exit(1)
}

const pad = (n, w) => String(n).padStart(w, '0')
const days = new Map() // day -> { n, actuals: [chunk...], schedule: [chunk...] }
let total = 0
let rowStart = 0
for (const rg of md.row_groups) {
  const rowEnd = rowStart + Number(rg.num_rows)
  const rows = await parquetReadObjects({ file, compressors, rowStart, rowEnd })
  const act = new Map()
  const sch = new Map()
  for (const r of rows) {
    for (const k of want) {
      if (r[k] === null || r[k] === undefined) {
        console.error(`flights-to-csv: ${src}: row ${total}: null ${k}`)
        process.exit(1)
      }
    }
    const d = r.date
    const day = `${d.getUTCFullYear()}-${pad(d.getUTCMonth() + 1, 2)}-${pad(d.getUTCDate(), 2)}`
    let info = days.get(day)
    if (!info) days.set(day, (info = { n: 0, actuals: [], schedule: [] }))
    const id = `${day.replaceAll('-', '')}-${pad(info.n++, 5)}`
    const dep = `${day} ${pad(d.getUTCHours(), 2)}:${pad(d.getUTCMinutes(), 2)}`
    const common = `${id},${dep},${r.origin},${r.destination},${r.distance}`
    if (!act.has(day)) { act.set(day, []); sch.set(day, []) }
    act.get(day).push(`${common},${r.delay}\n`)
    sch.get(day).push(`${common}\n`)
    total++
  }
  for (const [day, lines] of act) {
    days.get(day).actuals.push(lines.join(''))
    days.get(day).schedule.push(sch.get(day).join(''))
  }
  rowStart = rowEnd
}
if (total !== expected) {
  console.error(`flights-to-csv: ${src}: read ${total} rows, expected ${expected}`)
  process.exit(1)
}

fs.mkdirSync(path.join(out, 'actuals'), { recursive: true })
fs.mkdirSync(path.join(out, 'schedule'), { recursive: true })
for (const [day, info] of [...days].sort()) {
  fs.writeFileSync(path.join(out, 'actuals', `${day}.csv`),
    'flight_id,dep_time,origin,destination,distance,delay\n' + info.actuals.join(''))
  fs.writeFileSync(path.join(out, 'schedule', `${day}.csv`),
    'flight_id,dep_time,origin,destination,distance\n' + info.schedule.join(''))
}
const sorted = [...days.keys()].sort()
console.error(`flights-to-csv: ${total} rows, ${days.size} days ${sorted[0]}..${sorted[sorted.length - 1]}`)
