// A behavioural model of the ECP5 DP16KD for the tests of sparsa.hdl.bram, written by this project:
// Yosys' ECP5 cells_sim.v declares DP16KD only as a (* blackbox *), so there is no reference model to
// simulate with.  It covers the configuration PipelinedBlockRam instantiates and stops ($fatal) on any
// other: both ports the same DATA_WIDTH (1, 2, 4, 9 or 18), port A NOREG, port B NOREG or OUTREG,
// CSDECODE 0b000, synchronous resets tied low.  Pin meanings as Yosys' own DP16KD mapping
// (techlibs/lattice/brams_map_16kd.v) uses them: a word address sits in ADx[13:s] with s = 0, 1, 2, 3, 4
// for x1, x2, x4, x9, x18; in x18 mode ADA[1:0] are the write port's two 9-bit byte enables.
// Port B's read latch advances with CEB, its output register (REGMODE_B = "OUTREG") with OCEB.
// A read of the word written in the same cycle is not modelled (the tests never do it).
`default_nettype none
module DP16KD(
  input DIA17, DIA16, DIA15, DIA14, DIA13, DIA12, DIA11, DIA10, DIA9, DIA8, DIA7, DIA6, DIA5, DIA4, DIA3, DIA2, DIA1, DIA0,
  input ADA13, ADA12, ADA11, ADA10, ADA9, ADA8, ADA7, ADA6, ADA5, ADA4, ADA3, ADA2, ADA1, ADA0,
  input CEA, OCEA, CLKA, WEA, RSTA,
  input CSA2, CSA1, CSA0,
  output DOA17, DOA16, DOA15, DOA14, DOA13, DOA12, DOA11, DOA10, DOA9, DOA8, DOA7, DOA6, DOA5, DOA4, DOA3, DOA2, DOA1, DOA0,
  input DIB17, DIB16, DIB15, DIB14, DIB13, DIB12, DIB11, DIB10, DIB9, DIB8, DIB7, DIB6, DIB5, DIB4, DIB3, DIB2, DIB1, DIB0,
  input ADB13, ADB12, ADB11, ADB10, ADB9, ADB8, ADB7, ADB6, ADB5, ADB4, ADB3, ADB2, ADB1, ADB0,
  input CEB, OCEB, CLKB, WEB, RSTB,
  input CSB2, CSB1, CSB0,
  output DOB17, DOB16, DOB15, DOB14, DOB13, DOB12, DOB11, DOB10, DOB9, DOB8, DOB7, DOB6, DOB5, DOB4, DOB3, DOB2, DOB1, DOB0
);
  parameter DATA_WIDTH_A = 18;
  parameter DATA_WIDTH_B = 18;
  parameter REGMODE_A = "NOREG";
  parameter REGMODE_B = "NOREG";
  parameter RESETMODE = "SYNC";
  parameter ASYNC_RESET_RELEASE = "SYNC";
  parameter CSDECODE_A = "0b000";
  parameter CSDECODE_B = "0b000";
  parameter WRITEMODE_A = "NORMAL";
  parameter WRITEMODE_B = "NORMAL";
  parameter GSR = "ENABLED";

  localparam W = DATA_WIDTH_B;
  localparam S = W == 1 ? 0 : W == 2 ? 1 : W == 4 ? 2 : W == 9 ? 3 : 4;
  localparam WORDS = 16384 >> S;

  wire [17:0] dia = {DIA17, DIA16, DIA15, DIA14, DIA13, DIA12, DIA11, DIA10, DIA9, DIA8, DIA7, DIA6, DIA5, DIA4, DIA3, DIA2, DIA1, DIA0};
  wire [13:0] ada = {ADA13, ADA12, ADA11, ADA10, ADA9, ADA8, ADA7, ADA6, ADA5, ADA4, ADA3, ADA2, ADA1, ADA0};
  wire [13:0] adb = {ADB13, ADB12, ADB11, ADB10, ADB9, ADB8, ADB7, ADB6, ADB5, ADB4, ADB3, ADB2, ADB1, ADB0};
  wire [13:0] wa = ada;          // the word address is wa[13:S]
  wire [13:0] ra = adb;

  reg [W-1:0] mem [0:WORDS-1];
  reg [W-1:0] latch_b = 0;
  reg [W-1:0] out_b = 0;

  initial begin
    if (DATA_WIDTH_A != DATA_WIDTH_B || !(W == 1 || W == 2 || W == 4 || W == 9 || W == 18))
      $fatal(1, "DP16KD model: unsupported DATA_WIDTH_A=%0d DATA_WIDTH_B=%0d", DATA_WIDTH_A, DATA_WIDTH_B);
    if (REGMODE_A != "NOREG" || !(REGMODE_B == "NOREG" || REGMODE_B == "OUTREG"))
      $fatal(1, "DP16KD model: unsupported REGMODE_A=%s REGMODE_B=%s", REGMODE_A, REGMODE_B);
    if (CSDECODE_A != "0b000" || CSDECODE_B != "0b000")
      $fatal(1, "DP16KD model: unsupported CSDECODE");
  end

  // The tests clock both ports with one clock, so one always block models both.
  wire [W-1:0] byte_mask;
  generate
    if (W == 18) begin : x18
      assign byte_mask = {{9{ADA1}}, {9{ADA0}}};     // x18 write: ADA[1:0] enable the two bytes
    end else begin : narrow
      assign byte_mask = {W{1'b1}};
    end
  endgenerate

  always @(posedge CLKA) begin
    if (RSTA || RSTB || {CSA2, CSA1, CSA0} != 3'b0 || {CSB2, CSB1, CSB0} != 3'b0 || WEB || OCEA)
      $fatal(1, "DP16KD model: RST, CS, WEB and OCEA must stay low");
    if (CEA && WEA)
      mem[wa[S +: 14 - S]] <= (mem[wa[S +: 14 - S]] & ~byte_mask) | (dia[W-1:0] & byte_mask);
    if (CEB) latch_b <= mem[ra[S +: 14 - S]];
    if (OCEB) out_b <= latch_b;
  end

  wire [W-1:0] dob = REGMODE_B == "OUTREG" ? out_b : latch_b;
  wire [17:0] dob18 = {{(18 - W){1'b0}}, dob};
  assign {DOB17, DOB16, DOB15, DOB14, DOB13, DOB12, DOB11, DOB10, DOB9, DOB8, DOB7, DOB6, DOB5, DOB4, DOB3, DOB2, DOB1, DOB0} = dob18;
  assign {DOA17, DOA16, DOA15, DOA14, DOA13, DOA12, DOA11, DOA10, DOA9, DOA8, DOA7, DOA6, DOA5, DOA4, DOA3, DOA2, DOA1, DOA0} = 18'b0;
endmodule
