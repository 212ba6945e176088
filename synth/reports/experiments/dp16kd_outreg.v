// One DP16KD read (port B, 18 bits) into an adder and a register: with REGB NOREG (what
// Yosys maps every block RAM to) and OUTREG (the block's output register). Run by
// dp16kd_outreg.sh; synth/reports/SEARCH.md, twelfth session, has its figures.
module top(input clk, input [9:0] ra, input [9:0] wa, input [17:0] wd, input we, output reg [17:0] q);
  wire [17:0] d;
  reg [9:0] ra_r, wa_r; reg [17:0] wd_r; reg we_r;
  always @(posedge clk) begin ra_r <= ra; wa_r <= wa; wd_r <= wd; we_r <= we; q <= d + 18'd1; end
  DP16KD #(.DATA_WIDTH_A(18), .DATA_WIDTH_B(18), .REGMODE_A("NOREG"), .REGMODE_B(`REGB)) ram (
    .CLKA(clk), .CEA(1'b1), .OCEA(1'b1), .WEA(we_r), .RSTA(1'b0), .CSA0(1'b0), .CSA1(1'b0), .CSA2(1'b0),
    .ADA0(1'b0), .ADA1(1'b0), .ADA2(1'b0), .ADA3(1'b0),
    .ADA4(wa_r[0]), .ADA5(wa_r[1]), .ADA6(wa_r[2]), .ADA7(wa_r[3]), .ADA8(wa_r[4]), .ADA9(wa_r[5]), .ADA10(wa_r[6]), .ADA11(wa_r[7]), .ADA12(wa_r[8]), .ADA13(wa_r[9]),
    .DIA0(wd_r[0]), .DIA1(wd_r[1]), .DIA2(wd_r[2]), .DIA3(wd_r[3]), .DIA4(wd_r[4]), .DIA5(wd_r[5]), .DIA6(wd_r[6]), .DIA7(wd_r[7]), .DIA8(wd_r[8]),
    .DIA9(wd_r[9]), .DIA10(wd_r[10]), .DIA11(wd_r[11]), .DIA12(wd_r[12]), .DIA13(wd_r[13]), .DIA14(wd_r[14]), .DIA15(wd_r[15]), .DIA16(wd_r[16]), .DIA17(wd_r[17]),
    .CLKB(clk), .CEB(1'b1), .OCEB(1'b1), .WEB(1'b0), .RSTB(1'b0), .CSB0(1'b0), .CSB1(1'b0), .CSB2(1'b0),
    .ADB0(1'b0), .ADB1(1'b0), .ADB2(1'b0), .ADB3(1'b0),
    .ADB4(ra_r[0]), .ADB5(ra_r[1]), .ADB6(ra_r[2]), .ADB7(ra_r[3]), .ADB8(ra_r[4]), .ADB9(ra_r[5]), .ADB10(ra_r[6]), .ADB11(ra_r[7]), .ADB12(ra_r[8]), .ADB13(ra_r[9]),
    .DOB0(d[0]), .DOB1(d[1]), .DOB2(d[2]), .DOB3(d[3]), .DOB4(d[4]), .DOB5(d[5]), .DOB6(d[6]), .DOB7(d[7]), .DOB8(d[8]),
    .DOB9(d[9]), .DOB10(d[10]), .DOB11(d[11]), .DOB12(d[12]), .DOB13(d[13]), .DOB14(d[14]), .DOB15(d[15]), .DOB16(d[16]), .DOB17(d[17]));
endmodule
