import { ClosedPositions, OpenPositions } from "../components/PositionsTable";

export default function PositionsPage() {
  return (
    <div className="stack" data-testid="positions-page">
      <OpenPositions />
      <ClosedPositions />
    </div>
  );
}
